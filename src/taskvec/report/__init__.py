"""`taskvec report`: one self-contained HTML page for a study (sessions, evaluations, patching and
steering results), every figure embedded with the command that reproduces it and the files it read.

`items` finds what the given paths hold, `sections` runs the analyses and builds each part of the
page, `html` writes the page, `run` puts them together (`make_report`).
"""
