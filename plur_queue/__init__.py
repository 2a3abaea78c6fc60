"""plur-queue: look at and manage the queue of posts."""
