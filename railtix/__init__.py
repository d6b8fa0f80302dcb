"""railtix: a train-seat ticketing server in the manner of China Railway's 12306."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
