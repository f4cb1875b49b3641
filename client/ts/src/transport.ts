/**
 * The WebSocket transport: each binary message carries one or more whole
 * MyIM frames, the same bytes as on TCP. Wire queues the frames that
 * arrive until a reader asks for them (the handshakes) or a listener takes
 * them over (a session).
 */
import { DefaultMaxFrame, type Frame, FrameReader } from "./frame.js";
import { ClosedError, MyIMError, TimeoutError } from "./errors.js";

/** The WebSocket constructor the SDK uses: the browser's, Node's (22+, or 20 with --experimental-websocket), or the `ws` package's. */
export type WebSocketLike = new (url: string) => WebSocket;

/** A connection carrying frames. */
export interface Wire {
  /** Sends bytes (one or more whole frames) as one binary message. */
  send(b: Uint8Array): void;
  /** Waits for the next frame, at most timeoutMs. */
  recv(timeoutMs: number): Promise<Frame>;
  /** Hands every frame, queued and future, to fn; onClose is called once when the wire ends. */
  listen(fn: (f: Frame) => void, onClose: (err: Error) => void): void;
  close(err?: Error): void;
  readonly closed: boolean;
}

/** Opens a WebSocket to url within timeoutMs and returns it as a Wire. */
export function openWebSocket(url: string, timeoutMs: number, WS?: WebSocketLike, maxFrame = DefaultMaxFrame): Promise<Wire> {
  const Ctor = WS ?? (globalThis as { WebSocket?: WebSocketLike }).WebSocket;
  if (!Ctor) {
    return Promise.reject(new MyIMError("config", "client: no WebSocket (Node 20: run with --experimental-websocket, or pass Config.WebSocket)"));
  }
  return new Promise((resolve, reject) => {
    let ws: WebSocket;
    try {
      ws = new Ctor(url);
    } catch (e) {
      reject(new ClosedError(`cannot open ${url}`, { cause: e }));
      return;
    }
    ws.binaryType = "arraybuffer";
    const t = setTimeout(() => {
      ws.close();
      reject(new TimeoutError(`connecting to ${url}`));
    }, timeoutMs);
    const w = new WSWire(ws, maxFrame);
    ws.onopen = () => {
      clearTimeout(t);
      resolve(w);
    };
    ws.onerror = () => {
      clearTimeout(t);
      reject(new ClosedError(`cannot connect to ${url}`));
    };
  });
}

class WSWire implements Wire {
  private reader: FrameReader;
  private queue: Frame[] = [];
  private waiter: { resolve: (f: Frame) => void; reject: (e: Error) => void } | null = null;
  private listener: ((f: Frame) => void) | null = null;
  private onClose: ((err: Error) => void) | null = null;
  private err: Error | null = null;

  constructor(private ws: WebSocket, maxFrame: number) {
    this.reader = new FrameReader(maxFrame);
    ws.onmessage = (ev: MessageEvent) => {
      if (this.err) return;
      if (!(ev.data instanceof ArrayBuffer)) {
        this.close(new MyIMError("protocol", "client: text WebSocket message"));
        return;
      }
      let frames: Frame[];
      try {
        frames = this.reader.push(new Uint8Array(ev.data));
      } catch (e) {
        this.close(e as Error);
        return;
      }
      for (const f of frames) this.deliver(f);
    };
    ws.onclose = (ev: CloseEvent) => this.close(new ClosedError(`closed by the server (${ev.code}${ev.reason ? " " + ev.reason : ""})`));
    ws.onerror = () => this.close(new ClosedError("connection error"));
  }

  get closed(): boolean {
    return this.err !== null;
  }

  private deliver(f: Frame): void {
    if (this.listener) {
      this.listener(f);
    } else if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(f);
    } else {
      this.queue.push(f);
    }
  }

  send(b: Uint8Array): void {
    if (this.err) throw this.err instanceof ClosedError ? this.err : new ClosedError("connection closed", { cause: this.err });
    this.ws.send(b as Uint8Array<ArrayBuffer>);
  }

  recv(timeoutMs: number): Promise<Frame> {
    const f = this.queue.shift();
    if (f) return Promise.resolve(f);
    if (this.err) return Promise.reject(this.err);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = null;
        reject(new TimeoutError("waiting for the server"));
      }, timeoutMs);
      this.waiter = {
        resolve: (f) => {
          clearTimeout(t);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      };
    });
  }

  listen(fn: (f: Frame) => void, onClose: (err: Error) => void): void {
    this.listener = fn;
    this.onClose = onClose;
    const q = this.queue;
    this.queue = [];
    for (const f of q) fn(f);
    if (this.err) onClose(this.err);
  }

  close(err: Error = new ClosedError()): void {
    if (this.err) return;
    this.err = err;
    try {
      this.ws.close(1000);
    } catch {
      /* already closing */
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(err);
    }
    if (this.onClose) this.onClose(err);
  }
}
