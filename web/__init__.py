"""The web front ends of one :class:`pipeline.service.LogoService`: the JSON API and the Gradio search page.

``app.py`` assembles them with the Dash map (``dashboard/``) on one port. Nothing
here computes anything: each route or event reads its input, calls the
service, and shapes the answer.
"""
