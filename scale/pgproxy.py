"""A counting TCP proxy for the PostgreSQL wire protocol (no TLS).

Forwards 127.0.0.1:<listen> to <upstream> unchanged and counts, per message type, what the
client sends (P Parse, B Bind, E Execute, Q simple query, S Sync) and what the server answers
(C CommandComplete: one per statement run; Z ReadyForQuery: one per round trip). Used by
measure.py to count PostgreSQL work per login and per check without pg_stat_statements.
"""

import socket
import struct
import threading
from collections import Counter

UNTYPED = {80877103, 80877104, 80877102}  # SSLRequest, GSSENCRequest, CancelRequest


class PgProxy:
    def __init__(self, upstream=("127.0.0.1", 5432)):
        self.upstream = upstream
        self.lock = threading.Lock()
        self.client = Counter()
        self.server = Counter()
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return Counter(self.client), Counter(self.server), self.connections

    def _accept(self):
        while True:
            c, _ = self.sock.accept()
            u = socket.create_connection(self.upstream)
            with self.lock:
                self.connections += 1
            state = {"ssl_reply_pending": False}
            threading.Thread(target=self._pump, args=(c, u, True, state), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False, state), daemon=True).start()

    def _pump(self, src, dst, from_client, state):
        buf = b""
        startup = from_client  # the client's first message(s) have no type byte
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                while True:
                    if not from_client and state["ssl_reply_pending"]:
                        if not buf:
                            break
                        buf = buf[1:]  # the one-byte answer to SSLRequest / GSSENCRequest
                        state["ssl_reply_pending"] = False
                        continue
                    if startup:
                        if len(buf) < 8:
                            break
                        (n,) = struct.unpack("!I", buf[:4])
                        if len(buf) < n:
                            break
                        (code,) = struct.unpack("!I", buf[4:8])
                        buf = buf[n:]
                        if code in (80877103, 80877104):
                            state["ssl_reply_pending"] = True
                        elif code not in UNTYPED:
                            startup = False
                        continue
                    if len(buf) < 5:
                        break
                    t = buf[:1].decode("latin-1")
                    (n,) = struct.unpack("!I", buf[1:5])
                    if len(buf) < 1 + n:
                        break
                    buf = buf[1 + n :]
                    with self.lock:
                        (self.client if from_client else self.server)[t] += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
