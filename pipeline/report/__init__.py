"""The report of a finished job: figures, an HTML page with SVG charts.

    data = build_report(prefix)        # figures from the job folder
    html = render_html(data)           # one self-contained file

Lives here: `data` (figures read from the job folder), `html` (the page), `svg` (charts),
`drift` (the canary and shift card).
May import: calls.cache (reused answers), drift (the canary and shift figures), the shared
ground and schemas. Nothing prints.
"""
