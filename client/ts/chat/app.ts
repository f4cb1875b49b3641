// The /chat page: register or log in, friends with presence, one-to-one
// and group chat with delivered/stored ticks, offline messages shown on
// return. Built from the SDK by scripts/chat.mjs into web/chat/chat.html.
import { Session, HTTPClient, type Message, type Acked, ServerError, HTTPError, generateDeviceKey, hex, fromHex } from "../src/index.js";

interface PageConfig {
  roots: string;
  /** The WebSocket port, or a whole ws:// URL. */
  ws: string;
}

const cfg = JSON.parse(document.getElementById("myim-config")!.textContent!) as PageConfig;
const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const http = new HTTPClient(location.origin);

type Peer = { kind: "p2p" | "group"; id: bigint; name: string; status: number; unread: number };
type Line = { el: HTMLElement; tick?: HTMLElement };

let session: Session | null = null;
let api = http;
let me = 0n;
let connectedAt = 0;
const peers = new Map<string, Peer>();
const logs = new Map<string, HTMLElement[]>();
const pending = new Map<string, Line>(); // group sends by CID, until the echo
let active: string | null = null;
const awayShown = new Set<string>();

function wsURL(): string {
  if (/^wss?:\/\//.test(cfg.ws)) return cfg.ws;
  const port = cfg.ws.replace(/^.*:/, "");
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.hostname}:${port}`;
}

function deviceKey(name: string): Uint8Array {
  const k = `myim-device-${name}`;
  const saved = localStorage.getItem(k);
  if (saved) return fromHex(saved);
  const d = generateDeviceKey();
  localStorage.setItem(k, hex(d));
  return d;
}

function showError(id: string, e: unknown): void {
  $(id).textContent = e instanceof Error ? e.message : String(e);
}

async function start(register: boolean): Promise<void> {
  const name = $<HTMLInputElement>("name").value.trim();
  const password = $<HTMLInputElement>("password").value;
  $("error").textContent = "";
  try {
    if (register) await http.register(name, password);
    const s = new Session({ url: wsURL(), roots: cfg.roots, device: deviceKey(name), deviceName: navigator.userAgent.slice(0, 100) }, name, password);
    s.on("message", onMessage);
    s.on("presence", (p) => setStatus(`p2p:${p.user}`, p.status));
    s.on("connected", () => {
      connectedAt = Date.now();
      $("status").textContent = "online";
      void refresh();
    });
    s.on("disconnected", () => ($("status").textContent = "reconnecting…"));
    await s.start();
    session = s;
    me = s.user;
    api = http.withToken(() => s.token);
    $("me").textContent = name;
    $("login").style.display = "none";
    $("app").style.display = "flex";
    setInterval(() => void refreshFriends(), 2000);
  } catch (e) {
    if (e instanceof ServerError && e.code === 13) showError("error", new Error("wrong name or password"));
    else if (e instanceof HTTPError && e.status === 409) showError("error", new Error("that name is taken"));
    else showError("error", e);
  }
}

let refreshing: Promise<void> | null = null;
let friendsRefreshing: Promise<void> | null = null;

/** Reloads friends and groups; concurrent calls share one run. */
function refresh(): Promise<void> {
  refreshing ??= (async () => {
    await refreshFriends();
    const { groups } = await api.groups();
    for (const g of groups) {
      if (peers.has(`group:${g}`)) continue;
      const info = await api.groupMembers(g);
      if (!peers.has(`group:${g}`)) addPeer({ kind: "group", id: BigInt(g), name: info.name, status: -1, unread: 0 });
    }
  })().finally(() => (refreshing = null));
  return refreshing;
}

/** Reloads friends, their presence and the requests waiting; concurrent calls share one run. */
function refreshFriends(): Promise<void> {
  friendsRefreshing ??= loadFriends().finally(() => (friendsRefreshing = null));
  return friendsRefreshing;
}

async function loadFriends(): Promise<void> {
  const s = session;
  if (!s || !s.conn) return;
  const { friends, requests } = await api.friends();
  const online = new Map<string, number>();
  for (const f of await s.conn.friendsOnline()) online.set(String(f.user), f.status);
  for (const f of friends) {
    const key = `p2p:${f}`;
    if (!peers.has(key)) {
      const card = await s.conn.userCard(BigInt(f));
      if (!peers.has(key)) addPeer({ kind: "p2p", id: BigInt(f), name: card.name, status: 0, unread: 0 });
    }
    const el = peerEl(key);
    if (el?.dataset.stranger) {
      delete el.dataset.stranger;
      el.querySelector("span:nth-child(2)")!.textContent = peers.get(key)!.name;
    }
    setStatus(key, online.get(String(f)) ?? 0);
  }
  const items: HTMLElement[] = [];
  for (const r of requests) {
    const card = await s.conn.userCard(BigInt(r));
    const li = document.createElement("li");
    li.className = "request";
    li.dataset.user = String(r);
    li.dataset.name = card.name;
    const span = document.createElement("span");
    span.textContent = `${card.name} asks to be friends`;
    const b = document.createElement("button");
    b.textContent = "Accept";
    b.onclick = async () => {
      li.remove();
      await api.acceptFriend(r);
      void refreshFriends();
    };
    li.append(span, b);
    items.push(li);
  }
  $("requests").replaceChildren(...items);
}

/** Lists a sender who is not (yet) a friend, so that its messages can be read. */
function addStranger(id: bigint): void {
  const key = `p2p:${id}`;
  addPeer({ kind: "p2p", id, name: `user ${id}`, status: 0, unread: 0 });
  peerEl(key)!.dataset.stranger = "1";
  void session?.conn?.userCard(id).then((card) => {
    const p = peers.get(key);
    const el = peerEl(key);
    if (!p || !el) return;
    p.name = card.name;
    el.dataset.name = card.name;
    el.querySelector("span:nth-child(2)")!.textContent = `${card.name} (not a friend)`;
    if (active === key) head(p);
  });
}

function addPeer(p: Peer): void {
  const key = `${p.kind}:${p.id}`;
  peers.set(key, p);
  const li = document.createElement("li");
  li.className = "peer";
  li.id = `peer-${p.kind}-${p.id}`;
  li.dataset.key = key;
  li.dataset.name = p.name;
  const dot = document.createElement("span");
  dot.className = "dot";
  dot.dataset.status = String(p.status);
  const name = document.createElement("span");
  name.textContent = p.kind === "group" ? `# ${p.name}` : p.name;
  const unread = document.createElement("span");
  unread.className = "unread";
  unread.style.display = "none";
  li.append(dot, name, unread);
  li.onclick = () => open(key);
  $(p.kind === "group" ? "groups" : "friends").append(li);
  if (!logs.has(key)) logs.set(key, []);
}

function peerEl(key: string): HTMLElement | null {
  const [kind, id] = key.split(":");
  return document.getElementById(`peer-${kind}-${id}`);
}

function setStatus(key: string, status: number): void {
  const p = peers.get(key);
  if (!p) return;
  p.status = status;
  const dot = peerEl(key)?.querySelector<HTMLElement>(".dot");
  if (dot) dot.dataset.status = String(status);
  if (key === active) head(p);
}

const STATUS_TEXT = ["offline", "online", "away", "busy"];

function head(p: Peer): void {
  const friend = document.getElementById("friends")!.contains(peerEl(`${p.kind}:${p.id}`)) && !peerEl(`${p.kind}:${p.id}`)!.dataset.stranger;
  $("head").textContent = p.kind === "group" ? `# ${p.name}` : friend ? `${p.name} · ${STATUS_TEXT[p.status] ?? "offline"}` : `${p.name} · not a friend`;
}

function open(key: string): void {
  active = key;
  const p = peers.get(key)!;
  p.unread = 0;
  document.querySelectorAll("li.peer").forEach((li) => li.classList.toggle("active", (li as HTMLElement).dataset.key === key));
  const u = peerEl(key)?.querySelector<HTMLElement>(".unread");
  if (u) u.style.display = "none";
  $("invite-row").style.display = p.kind === "group" ? "flex" : "none";
  head(p);
  $("log").replaceChildren(...(logs.get(key) ?? []));
  $("log").scrollTop = 1e9;
  $<HTMLInputElement>("text").focus();
}

function line(key: string, dir: "in" | "out", text: string, time: number, from?: string): Line {
  const el = document.createElement("div");
  el.className = "msg";
  el.dataset.dir = dir;
  if (from) {
    const f = document.createElement("div");
    f.className = "from";
    f.textContent = from;
    el.append(f);
  }
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = new Date(time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + " ";
  el.append(body, meta);
  let tick: HTMLElement | undefined;
  if (dir === "out") {
    tick = document.createElement("span");
    tick.className = "tick";
    tick.dataset.tick = "sending";
    tick.textContent = "…";
    meta.append(tick);
  }
  append(key, el);
  return { el, tick };
}

function append(key: string, el: HTMLElement): void {
  if (!logs.has(key)) logs.set(key, []);
  logs.get(key)!.push(el);
  if (key === active) {
    $("log").append(el);
    $("log").scrollTop = 1e9;
  }
}

function setTick(l: Line, a: Acked | null): void {
  if (!l.tick) return;
  const t = a?.status === "delivered" || a?.status === "duplicate" ? "delivered" : "stored";
  l.tick.dataset.tick = t;
  l.tick.textContent = t === "delivered" ? "✓✓" : "✓";
  l.tick.title = t;
}

function onMessage(m: Message): void {
  const key = m.kind === "group" ? `group:${m.to}` : `p2p:${m.from}`;
  if (m.kind === "group" && m.from === me) {
    const l = pending.get(String(m.cid));
    if (l) return; // our own echo: the line is there already
  }
  if (!peers.has(key)) {
    if (m.kind === "group") void refresh();
    else addStranger(m.from);
  }
  if (m.time < connectedAt && !awayShown.has(key)) {
    awayShown.add(key);
    const d = document.createElement("div");
    d.className = "away";
    d.textContent = "sent while you were away";
    append(key, d);
  }
  const from = m.kind === "group" ? (peers.get(`p2p:${m.from}`)?.name ?? (m.from === me ? "me" : `user ${m.from}`)) : undefined;
  const l = line(key, m.from === me ? "out" : "in", m.text, m.time, from);
  l.el.dataset.mid = String(m.mid);
  if (key !== active) {
    const p = peers.get(key);
    const u = peerEl(key)?.querySelector<HTMLElement>(".unread");
    if (p && u) {
      p.unread++;
      u.textContent = String(p.unread);
      u.style.display = "";
    }
  }
}

async function send(): Promise<void> {
  const input = $<HTMLInputElement>("text");
  const text = input.value;
  if (!text || !active || !session) return;
  input.value = "";
  const p = peers.get(active)!;
  const l = line(active, "out", text, Date.now());
  const s = session;
  const cid = s.newCID();
  if (p.kind === "group") pending.set(String(cid), l);
  try {
    setTick(l, await s.send(p.id, text, { group: p.kind === "group", cid }));
  } catch (e) {
    if (l.tick) {
      l.tick.dataset.tick = "failed";
      l.tick.textContent = "!";
      l.tick.title = e instanceof Error ? e.message : String(e);
    }
  }
}

async function addFriend(): Promise<void> {
  const name = $<HTMLInputElement>("friend-name").value.trim();
  if (!name) return;
  $("side-error").textContent = "";
  $("side-note").textContent = "";
  try {
    const u = await api.findUser(name);
    await api.requestFriend(u.user);
    $<HTMLInputElement>("friend-name").value = "";
    $("side-note").textContent = `asked ${name}`;
  } catch (e) {
    showError("side-error", e);
  }
}

async function addGroup(): Promise<void> {
  const name = $<HTMLInputElement>("group-name").value.trim();
  if (!name || !session?.conn) return;
  try {
    const g = await session.conn.createGroup(name);
    $<HTMLInputElement>("group-name").value = "";
    addPeer({ kind: "group", id: g, name, status: -1, unread: 0 });
    open(`group:${g}`);
  } catch (e) {
    showError("side-error", e);
  }
}

async function invite(): Promise<void> {
  const name = $<HTMLInputElement>("invite-name").value.trim();
  const p = active ? peers.get(active) : undefined;
  if (!name || !p || p.kind !== "group") return;
  try {
    const u = await api.findUser(name);
    await api.inviteToGroup(p.id, u.user);
    $<HTMLInputElement>("invite-name").value = "";
    $("side-note").textContent = `${name} is in ${p.name}`;
  } catch (e) {
    showError("side-error", e);
  }
}

$("login").onsubmit = (e) => {
  e.preventDefault();
  void start(false);
};
$("do-register").onclick = () => void start(true);
$("compose").onsubmit = (e) => {
  e.preventDefault();
  void send();
};
$("add-friend").onclick = () => void addFriend();
$("add-group").onclick = () => void addGroup();
$("invite").onclick = () => void invite();
