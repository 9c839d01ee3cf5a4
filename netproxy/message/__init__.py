# -*- test-case-name: tests.message -*-
"""
The JSON message roles: the framing and fields of the messages, the relay,
the reverse proxy with its registry and forwarder, the backend server, the
ack and upper servers, their clients, and the services each role's options
build (L{netproxy.message.services}).
"""
