"""The appliance's HTTP/WebSocket API v1 (aiohttp), served from the core process's loop."""
