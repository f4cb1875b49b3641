// A Wire over raw TCP (node:net): the same frames as the WebSocket, so the
// SDK's sessions can be tested against a server's TCP listeners too.
import net from "node:net";
import { FrameReader } from "../dist/frame.js";
import { ClosedError, TimeoutError } from "../dist/errors.js";

export function tcpWire(addrs) {
  return (url, timeoutMs) =>
    new Promise((resolve, reject) => {
      const role = new URL(url).pathname.replace(/^\//, "");
      const [host, port] = addrs[role].split(/:(?=\d+$)/);
      const sock = net.connect({ host, port: Number(port) });
      const t = setTimeout(() => {
        sock.destroy();
        reject(new TimeoutError(`connecting to ${url}`));
      }, timeoutMs);
      sock.once("error", (e) => {
        clearTimeout(t);
        reject(new ClosedError("cannot connect", { cause: e }));
      });
      sock.once("connect", () => {
        clearTimeout(t);
        resolve(new TCPWire(sock));
      });
    });
}

class TCPWire {
  constructor(sock) {
    this.sock = sock;
    this.reader = new FrameReader();
    this.queue = [];
    this.waiter = null;
    this.listener = null;
    this.onClose = null;
    this.err = null;
    sock.on("data", (b) => {
      let fs;
      try {
        fs = this.reader.push(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
      } catch (e) {
        return this.close(e);
      }
      for (const f of fs) {
        if (this.listener) this.listener(f);
        else if (this.waiter) {
          const w = this.waiter;
          this.waiter = null;
          w.resolve(f);
        } else this.queue.push(f);
      }
    });
    sock.on("close", () => this.close(new ClosedError("closed by the server")));
    sock.on("error", () => this.close(new ClosedError("connection error")));
  }
  get closed() {
    return this.err !== null;
  }
  send(b) {
    if (this.err) throw new ClosedError("connection closed", { cause: this.err });
    this.sock.write(b);
  }
  recv(timeoutMs) {
    const f = this.queue.shift();
    if (f) return Promise.resolve(f);
    if (this.err) return Promise.reject(this.err);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = null;
        reject(new TimeoutError("waiting for the server"));
      }, timeoutMs);
      this.waiter = { resolve: (f) => (clearTimeout(t), resolve(f)), reject: (e) => (clearTimeout(t), reject(e)) };
    });
  }
  listen(fn, onClose) {
    this.listener = fn;
    this.onClose = onClose;
    for (const f of this.queue.splice(0)) fn(f);
    if (this.err) onClose(this.err);
  }
  close(err = new ClosedError()) {
    if (this.err) return;
    this.err = err;
    this.sock.destroy();
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(err);
    }
    if (this.onClose) this.onClose(err);
  }
}
