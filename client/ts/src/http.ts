/**
 * The public HTTP API (docs/openapi.yaml): registration, friends, groups
 * and the private file server. Calls carry the access token as a bearer.
 */
import { HTTPError } from "./errors.js";
import { hex, parseJSON, stringifyJSON } from "./frame.js";
import { sha256 } from "./crypto.js";

type ID = number | bigint;

/** A file on the user's file server. */
export interface FileInfo {
  id: ID;
  owner: ID;
  name: string;
  size: number;
  sha256: string;
  created: number;
}

export class HTTPClient {
  /**
   * base is the HTTP listener's URL ("http://127.0.0.1:8080"); token, when
   * set, is sent as the bearer (a function is asked on every call, so a
   * Session's renewed token is used).
   */
  constructor(
    readonly base: string,
    private token?: string | (() => string | undefined),
    private readonly fetchFn: typeof fetch = (...a) => globalThis.fetch(...a),
  ) {
    this.base = base.replace(/\/+$/, "");
  }

  /** Returns a client for the same server with another token. */
  withToken(token: string | (() => string | undefined)): HTTPClient {
    return new HTTPClient(this.base, token, this.fetchFn);
  }

  private async call<T>(method: string, path: string, body?: unknown, raw?: { data: Uint8Array | Blob; type: string }): Promise<T> {
    const headers: Record<string, string> = {};
    const tok = typeof this.token === "function" ? this.token() : this.token;
    if (tok) headers.Authorization = `Bearer ${tok}`;
    let payload: BodyInit | undefined;
    if (raw) {
      headers["Content-Type"] = raw.type;
      payload = raw.data as BodyInit;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = stringifyJSON(body);
    }
    const res = await this.fetchFn(this.base + path, { method, headers, body: payload });
    const txt = res.status === 204 ? "" : await res.text();
    if (!res.ok) {
      let msg = res.statusText;
      try {
        msg = (JSON.parse(txt) as { error?: string }).error ?? msg;
      } catch {
        /* not JSON */
      }
      const ra = res.headers.get("Retry-After");
      throw new HTTPError(res.status, msg, ra ? Number(ra) : undefined);
    }
    return (txt === "" ? undefined : parseJSON(txt)) as T;
  }

  /** Registers a user (POST /v1/users); invite is needed with --registration invite. */
  register(name: string, password: string, invite?: string): Promise<{ id: ID; name: string }> {
    return this.call("POST", "/v1/users", invite ? { name, password, invite } : { name, password });
  }

  /** Finds a user by exact name (GET /v1/users?name=). */
  findUser(name: string): Promise<{ user: ID; name: string; signature: string }> {
    return this.call("GET", `/v1/users?name=${encodeURIComponent(name)}`);
  }

  /** The user's friends and the requests waiting for the user. */
  friends(): Promise<{ friends: ID[]; requests: ID[] }> {
    return this.call("GET", "/v1/friends");
  }

  /** Asks a user to be friends. */
  requestFriend(to: ID): Promise<{ from: ID; to: ID; state: string }> {
    return this.call("POST", "/v1/friends/requests", { to });
  }

  /** Accepts a pending request from a user. */
  acceptFriend(from: ID): Promise<{ user: ID; friend: ID; state: string }> {
    return this.call("POST", "/v1/friends/accept", { from });
  }

  /** Ends a friendship, or declines or withdraws a request. */
  removeFriend(user: ID): Promise<void> {
    return this.call("DELETE", `/v1/friends/${user}`);
  }

  /** Creates a group; the caller owns it. */
  createGroup(name: string, open = false): Promise<{ group: ID; name: string; owner: ID; open: boolean }> {
    return this.call("POST", "/v1/groups", { name, open });
  }

  /** The caller's groups. */
  groups(): Promise<{ groups: ID[] }> {
    return this.call("GET", "/v1/groups");
  }

  /** Adds a user to a group (owner or admin). */
  inviteToGroup(group: ID, user: ID): Promise<{ group: ID; user: ID; join_seq: ID; role: string }> {
    return this.call("POST", `/v1/groups/${group}/invite`, { user });
  }

  /** A group's members (members only). */
  groupMembers(group: ID): Promise<{ group: ID; name: string; owner: ID; open: boolean; members: ID[]; admins: ID[] }> {
    return this.call("GET", `/v1/groups/${group}/members`);
  }

  /** Uploads a file in one request (PUT /v1/files); the SHA-256 is computed here. */
  async upload(name: string, data: Uint8Array): Promise<FileInfo> {
    const sum = hex(sha256(data));
    return this.call("PUT", `/v1/files?name=${encodeURIComponent(name)}&sha256=${sum}`, undefined, {
      data: new Blob([data as BlobPart]),
      type: "application/octet-stream",
    });
  }

  /** The user's files and quota. */
  files(): Promise<{ files: FileInfo[]; used: number; quota: number }> {
    return this.call("GET", "/v1/files");
  }

  /** Downloads a file the user owns or that is shared with the user. */
  async download(id: ID): Promise<Uint8Array> {
    const headers: Record<string, string> = {};
    const tok = typeof this.token === "function" ? this.token() : this.token;
    if (tok) headers.Authorization = `Bearer ${tok}`;
    const res = await this.fetchFn(`${this.base}/v1/files/${id}`, { headers });
    if (!res.ok) throw new HTTPError(res.status, res.statusText);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** Shares a file with a user or a group. */
  share(file: ID, to: { user?: ID; group?: ID }): Promise<{ file: ID; user: ID; group: ID; shared: boolean }> {
    return this.call("POST", `/v1/files/${file}/share`, to);
  }

  /** Deletes one of the user's files. */
  deleteFile(id: ID): Promise<void> {
    return this.call("DELETE", `/v1/files/${id}`);
  }
}
