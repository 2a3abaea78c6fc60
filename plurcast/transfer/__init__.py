"""Plans in and out of the queue: plur-import reads JSON Lines, CSV and Markdown files into
posts, plur-export writes the queue back in the same formats.

`fields` names what a row may say (plur-post's long options), `read` turns files into rows,
`write` turns rows into files; `importer` and `exporter` connect them to the queue.
"""
