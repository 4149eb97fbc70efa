"""OSC and ZeroMQ: outgoing messages, control input, message schema."""
