"""plur-post: write a post and queue it (or keep it as a draft)."""
