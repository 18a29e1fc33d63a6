"""`dqa mcp`: the Verifier and the Tuner as Model Context Protocol tools an agent can discover and call.

service.py does the work on the project's store and job queue (no MCP imports); documents.py names the
typed results; server.py puts them behind the official `mcp` SDK (stdio and streamable HTTP); command.py is
the `dqa mcp` subcommand.
"""
