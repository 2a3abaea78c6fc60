"""`python -m plur_send`: the ExecStart of last resort, the same as the plur-send script."""

from plur_send import main

main()
