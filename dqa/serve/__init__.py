"""`dqa serve`: the Verifier as a local HTTP service (jobs for pipelines, A/B questions for people).

`dqa.serve.app.create_app(ServeConfig(...))` builds the FastAPI application; `dqa.serve.command` is the CLI.
"""
