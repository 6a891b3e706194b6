"""The server process: WebSocket sessions, REST control, shared inference.

``app.run_server`` is the entry point; see README's architecture section for the tasks
of a connection and how an interrupt travels.
"""
