"""plur-send: the daemon that delivers what is due."""
