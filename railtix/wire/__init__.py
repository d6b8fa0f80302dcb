"""Sans-IO codecs: bytes in, typed requests out; replies in, bytes out. No sockets here."""
