"""
The JSON message roles: framing, message fields, the relay, the reverse
proxy with its registry and forwarder, the backend server, the ack and
upper-case servers, and their clients.
"""
