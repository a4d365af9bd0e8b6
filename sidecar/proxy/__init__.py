"""The ASGI proxy: routing, pass-through streaming, the search interceptor."""
