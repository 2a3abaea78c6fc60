"""plur-queue: look at and manage the queue of posts (and plur-history, plur-import,
plur-export)."""

from plurcast.bulk import console


def main() -> None:
    console("plur_queue.cli")


def history() -> None:
    console("plur_queue.plur_history")


def import_rows() -> None:
    console("plur_queue.plur_import")


def export_rows() -> None:
    console("plur_queue.plur_export")
