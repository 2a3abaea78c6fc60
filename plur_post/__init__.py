"""plur-post: write a post and publish it now, or queue it."""

from plurcast.bulk import console


def main() -> None:
    console("plur_post.cli", frozen_exit=True)
