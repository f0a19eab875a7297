"""Error pages that real servers and proxies send, shared by the HTTP and CLI tests."""

from __future__ import annotations

#: nginx's own 502 page, as nginx 1.18 sends it (with the padding for MSIE and Chrome).
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0 (Ubuntu)</center>\r\n"
    "</body>\r\n</html>\r\n" + "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" * 6
)  # fmt: skip
