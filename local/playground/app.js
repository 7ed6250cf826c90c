// The Pix Me! playground: the mobile app's calls, made from a browser page.
// No framework and no build step: the DOM, fetch, and one XMLHttpRequest
// (fetch cannot report upload progress).
"use strict";

const state = {
  config: null,
  token: null,
  uid: null,
  upload: null,        // the ready upload's status
  styles: [],
  picked: new Set(),   // style ids
  results: [],         // generate answers (one per style)
  session: null,       // the session being edited: GET sessions/{id}
  turnId: null,        // the turn shown, where the next edit starts
};

const $ = (id) => document.getElementById(id);
const MAX_PACK = 6;
const POLL_MS = 250;
const POLL_LIMIT_MS = 60000;
// Ingest's steps in the order they run, for its timings.
const INGEST_STEPS = ["read", "decode", "face", "encode", "write"];

// --- calls ---------------------------------------------------------------------

// One line per call: the function (or host) and path, never a signature.
function logCall(method, what, status, ms) {
  const li = document.createElement("li");
  li.textContent = `${method} ${what} → ${status} (${ms} ms)`;
  if (!(status >= 200 && status < 300)) li.className = "fail";
  $("log").prepend(li);
}

class ApiError extends Error {
  constructor(status, error) {
    super(`${status} ${error.code || "error"}: ${error.message || ""}`);
    this.status = status;
    this.code = error.code;
  }
}

// One call to a function; resolves to {status, body, headers}, throws ApiError.
async function api(fn, method, path = "/", body = undefined) {
  const url = state.config.functions[fn].replace(/\/$/, "") + path;
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const started = performance.now();
  let resp;
  try {
    resp = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    logCall(method, fn + path, "network error", Math.round(performance.now() - started));
    throw new ApiError(0, { code: "network_error", message: `${fn} did not answer (${err.message})` });
  }
  logCall(method, fn + path, resp.status, Math.round(performance.now() - started));
  const text = await resp.text();
  let json = {};
  try { json = text ? JSON.parse(text) : {}; } catch { json = { error: { message: text.slice(0, 200) } }; }
  if (!resp.ok) throw new ApiError(resp.status, json.error || {});
  return { status: resp.status, body: json, headers: resp.headers };
}

function say(id, text, kind = "") {
  const el = $(id);
  el.textContent = text;
  el.className = `status ${kind}`;
}

function fail(id) {
  return (err) => say(id, err instanceof ApiError ? err.message : String(err), "error");
}

// Cards unlock as the flow gets there: data-needs="token" | "upload" | "session".
function refreshLocks() {
  const have = { token: !!state.token, upload: !!state.upload, session: !!state.session };
  for (const card of document.querySelectorAll("[data-needs]")) {
    card.classList.toggle("locked", !have[card.dataset.needs]);
  }
  $("editor").hidden = !state.session;
  $("delete-upload").disabled = !state.upload;
  $("no-session").hidden = !!state.session;
}

// --- 1. sign in -------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const uid = $("uid").value.trim();
  say("signin-status", "Asking the local issuer for a token…");
  const resp = await fetch("/token", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ uid }),
  });
  const body = await resp.json();
  if (!resp.ok) return say("signin-status", body.error.message, "error");
  Object.assign(state, { token: body.id_token, uid: body.uid, upload: null, session: null, results: [] });
  $("who").textContent = `signed in as ${body.uid}`;
  say("signin-status", `Signed in as ${body.uid} (a local ID token, valid ${body.expires_in_s / 60} min).`, "ok");
  refreshLocks();
  await Promise.all([loadModels(), refreshUsage()]);
}

// --- 2. selfie ----------------------------------------------------------------------

function putWithProgress(ticket, blob) {
  // Exactly the method and headers the ticket names, and nothing else: the
  // signature covers them, and an unsigned x-goog-* header is refused.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const started = performance.now();
    xhr.open(ticket.method, ticket.upload_url);
    for (const [name, value] of Object.entries(ticket.headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) progress("upload-progress", e.loaded / e.total, `Uploading ${Math.round((100 * e.loaded) / e.total)} %`);
    };
    xhr.onload = () => {
      logCall(ticket.method, "signed upload URL", xhr.status, Math.round(performance.now() - started));
      if (xhr.status >= 200 && xhr.status < 300) resolve();
      else {
        const code = (/<Code>([^<]*)<\/Code>/.exec(xhr.responseText) || [])[1] || "refused";
        reject(new ApiError(xhr.status, { code, message: "the signed upload URL refused the photo" }));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, { code: "network_error", message: "the storage host did not answer" }));
    xhr.send(blob);
  });
}

function progress(id, fraction, label) {
  const bar = $(id);
  bar.hidden = false;
  if (fraction !== null) bar.querySelector(".fill").style.width = `${Math.round(fraction * 100)}%`;
  bar.querySelector(".label").textContent = label;
}

async function uploadSelfie(blob) {
  state.upload = null;
  state.session = null;
  state.results = [];
  $("avatars").replaceChildren();
  $("ingest").hidden = true;
  refreshLocks();
  say("upload-status", "");
  const type = blob.type || "image/jpeg";
  progress("upload-progress", 0, "Asking for a signed upload URL…");
  const ticket = (await api("uploads", "POST", "/", { content_type: type })).body;
  await putWithProgress(ticket, blob);
  progress("upload-progress", 1, "Uploaded; waiting for ingest…");
  const started = performance.now();
  let status;
  for (;;) {
    status = (await api("uploads", "GET", `/${ticket.upload_id}`)).body;
    if (status.status === "ready" || status.status === "rejected") break;
    progress("upload-progress", 1, `Ingest: ${status.status}… ${((performance.now() - started) / 1000).toFixed(1)} s`);
    if (performance.now() - started > POLL_LIMIT_MS) throw new Error(`upload still ${status.status} after a minute`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  $("upload-progress").hidden = true;
  if (status.status === "rejected") {
    say("upload-status", `Rejected (${status.reason}): ${status.message}`, "error");
    return;
  }
  state.upload = status;
  say("upload-status", `Ready: upload ${status.upload_id}.`, "ok");
  await showIngest(status);
  refreshLocks();
  await refreshUsage();
}

async function showIngest(status) {
  // The export names the normalized picture and the crop ingest stored.
  const exported = (await api("account", "GET", "/export")).body;
  const mine = exported.uploads.find((u) => u.upload_id === status.upload_id) || {};
  const box = status.face_box;
  $("normalized").src = mine.image_url || "";
  $("crop").src = mine.face_url || "";
  $("crop").parentElement.hidden = !mine.face_url;
  const face = $("facebox");
  face.hidden = !box;
  if (box) {
    Object.assign(face.style, {
      left: `${(100 * box.x) / status.width}%`, top: `${(100 * box.y) / status.height}%`,
      width: `${(100 * box.w) / status.width}%`, height: `${(100 * box.h) / status.height}%`,
    });
  }
  const t = status.timings_ms || {};
  const total = Object.values(t).reduce((a, b) => a + b, 0);
  const steps = Object.keys(t).sort((a, b) => INGEST_STEPS.indexOf(a) - INGEST_STEPS.indexOf(b));
  facts("ingest-facts", [
    ["size", `${status.width} × ${status.height} px`],
    ["face", box ? `${box.w} × ${box.h} px at (${box.x}, ${box.y}), score ${box.score}` : "none"],
    ["ingest", `${Math.round(total)} ms (${steps.map((k) => `${k} ${Math.round(t[k])}`).join(", ")})`],
    ["expires", new Date(status.expires_at).toLocaleString()],
  ]);
  $("ingest").hidden = false;
}

function facts(id, rows) {
  const dl = $(id);
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  }
}

// --- 3. style and model -------------------------------------------------------------

async function loadStyles() {
  const resp = await fetch(state.config.functions.sessions.replace(/\/$/, "") + "/styles");
  state.styles = (await resp.json()).styles;
  const box = $("styles");
  for (const style of state.styles) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "style";
    b.dataset.style = style.id;
    b.textContent = style.name;
    b.title = style.description;
    b.setAttribute("aria-pressed", "false");
    b.addEventListener("click", () => toggleStyle(style.id, b));
    box.append(b);
  }
}

function toggleStyle(id, button) {
  if (state.picked.has(id)) state.picked.delete(id);
  else if (state.picked.size < MAX_PACK) state.picked.add(id);
  button.setAttribute("aria-pressed", String(state.picked.has(id)));
  const n = state.picked.size;
  $("generate").disabled = n === 0;
  $("generate").textContent = n > 1 ? `Generate a pack of ${n}` : "Generate";
}

async function loadModels() {
  const models = (await api("sessions", "GET", "/models")).body.models;
  const select = $("model");
  select.replaceChildren();
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.alias;
    o.textContent = `${m.alias} (costs ${m.cost})${m.allowed ? "" : " — not for this account"}`;
    o.disabled = !m.allowed;
    o.selected = m.default;
    select.append(o);
  }
}

async function generate() {
  const styles = [...state.picked];
  const body = { upload_id: state.upload.upload_id, model: $("model").value };
  if (styles.length === 1) body.style = styles[0];
  else body.styles = styles;
  if ($("prompt").value.trim()) body.prompt = $("prompt").value.trim();
  if ($("caption").value.trim()) body.caption = $("caption").value.trim();
  $("generate").disabled = true;
  say("generate-status", "");
  const started = performance.now();
  const tick = setInterval(() => {
    const s = ((performance.now() - started) / 1000).toFixed(1);
    progress("generate-progress", null, `Rendering ${styles.map(styleName).join(", ")} with ${body.model}… ${s} s`);
  }, 100);
  try {
    const answer = (await api("generate", "POST", "/", body)).body;
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    clearInterval(tick);
    $("generate-progress").hidden = true;
    const results = answer.results || [answer];
    state.results = results;
    renderAvatars();
    const made = results.filter((r) => !r.error);
    if (made.length) await openSession(made[0].session_id, made[0].turn_id);
    say("generate-status", `${made.length} of ${results.length} made in ${secs} s.`, made.length ? "ok" : "error");
  } finally {
    clearInterval(tick);
    $("generate-progress").hidden = true;
    $("generate").disabled = state.picked.size === 0;
    await refreshUsage();
  }
}

function styleName(id) {
  return (state.styles.find((s) => s.id === id) || { name: id }).name;
}

function renderAvatars() {
  const box = $("avatars");
  box.replaceChildren();
  for (const r of state.results) {
    const card = document.createElement("article");
    card.className = "avatar";
    const h = document.createElement("h4");
    h.textContent = styleName(r.style);
    if (r.error) {
      card.classList.add("failed");
      const p = document.createElement("p");
      p.textContent = `${r.error.code}: ${r.error.message}`;
      card.append(h, p);
    } else {
      card.dataset.session = r.session_id;
      card.classList.toggle("selected", state.session && state.session.session_id === r.session_id);
      const img = document.createElement("img");
      img.src = r.image_url;
      img.alt = `${r.style} avatar`;
      const text = document.createElement("p");
      text.className = "model-text";
      text.textContent = r.text || "";
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = `${r.model_version || r.model} · ${r.ms} ms`;
      const open = document.createElement("button");
      open.type = "button";
      open.textContent = "Edit this one";
      open.addEventListener("click", () => openSession(r.session_id).catch(fail("edit-status")));
      card.append(img, h, text, meta, open);
    }
    box.append(card);
  }
}

// --- 4. edits and the turn tree -----------------------------------------------------------

async function openSession(sessionId, turnId = null) {
  const session = (await api("sessions", "GET", `/${sessionId}?limit=100`)).body;
  state.session = session;
  state.turnId = turnId || session.head_turn_id;
  $("session-name").textContent = `${styleName(session.style)} · ${session.session_id}`;
  for (const card of document.querySelectorAll(".avatar[data-session]")) {
    card.classList.toggle("selected", card.dataset.session === sessionId);
  }
  refreshLocks();
  renderTurn();
}

function turnOf(id) {
  return state.session.turns.find((t) => t.turn_id === id);
}

function renderTurn() {
  const turn = turnOf(state.turnId);
  $("current-image").src = turn.image_url;
  $("current-text").textContent = turn.text || "";
  $("undo").disabled = !turn.parent_turn_id;
  renderTree();
}

function renderTree() {
  const turns = state.session.turns;
  const children = new Map();
  for (const t of turns) {
    const key = t.parent_turn_id || "";
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(t);
  }
  const build = (parent) => {
    const ol = document.createElement("ol");
    for (const t of children.get(parent) || []) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "turn" + (t.turn_id === state.turnId ? " current" : "");
      b.dataset.turn = t.turn_id;
      const img = document.createElement("img");
      img.src = t.image_url;
      img.alt = "";
      const words = document.createElement("span");
      const what = document.createElement("span");
      what.className = "what";
      what.textContent = t.instruction || `${styleName(state.session.style)} (generated)`;
      const said = document.createElement("span");
      said.className = "said";
      said.textContent = t.text || "";
      words.append(what, said);
      const tag = document.createElement("span");
      tag.className = "tag";
      const tags = [];
      if (t.turn_id === state.turnId) tags.push("shown");
      if (t.turn_id === state.session.head_turn_id) tags.push("latest");
      const branches = (children.get(t.turn_id) || []).length;
      if (branches > 1) tags.push(`${branches} branches`);
      tag.textContent = tags.join(" · ");
      b.append(img, words, tag);
      b.addEventListener("click", () => { state.turnId = t.turn_id; renderTurn(); });
      li.append(b);
      if (children.has(t.turn_id)) li.append(build(t.turn_id));
      ol.append(li);
    }
    return ol;
  };
  $("tree").replaceChildren(...build("").childNodes);
}

async function applyEdit(event) {
  event.preventDefault();
  const instruction = $("instruction").value.trim();
  if (!instruction) return;
  $("edit-button").disabled = true;
  say("edit-status", `Applying “${instruction}”…`);
  const started = performance.now();
  try {
    const answer = (await api("edit", "POST", "/", {
      session_id: state.session.session_id, instruction, from_turn: state.turnId,
    })).body;
    $("instruction").value = "";
    await openSession(answer.session_id, answer.turn_id);
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    say("edit-status", `Turn ${answer.turn_count} in ${secs} s.`, "ok");
  } finally {
    $("edit-button").disabled = false;
    await refreshUsage();
  }
}

function undo() {
  const turn = turnOf(state.turnId);
  if (!turn.parent_turn_id) return;
  state.turnId = turn.parent_turn_id;
  renderTurn();
  say("edit-status", "Back one turn: the next edit branches from here.", "ok");
}

async function download() {
  const turn = turnOf(state.turnId);
  const resp = await fetch(turn.image_url);
  logCall("GET", "signed image URL", resp.status, 0);
  if (!resp.ok) throw new Error(`the image URL answered ${resp.status}`);
  const blob = await resp.blob();
  const ext = blob.type === "image/jpeg" ? "jpg" : "png";
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `pixme-${state.session.session_id}-${turn.turn_id}.${ext}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// --- 5. quota and deletion ----------------------------------------------------------------

async function refreshUsage() {
  const u = (await api("account", "GET", "/usage")).body;
  const hours = (u.reset_in_s / 3600).toFixed(1);
  $("quota").hidden = false;
  $("quota").textContent = `${u.generations.remaining} generations · ${u.edits.remaining} edits left today`;
  facts("usage", [
    ["generations", `${u.generations.remaining} of ${u.generations.limit} left`],
    ["edits", `${u.edits.remaining} of ${u.edits.limit} left`],
    ["uploads", `${u.uploads.daily_limit} a day, ${u.uploads.max_pending} at once`],
    ["resets", `in ${hours} h (UTC midnight)`],
  ]);
}

function forgetUpload() {
  Object.assign(state, { upload: null, session: null, results: [], turnId: null });
  $("avatars").replaceChildren();
  $("tree").replaceChildren();
  $("session-name").textContent = "";
  $("ingest").hidden = true;
  say("upload-status", "");
  say("generate-status", "");
  say("edit-status", "");
  refreshLocks();
}

async function deleteUpload() {
  if (!state.upload) return say("data-status", "No selfie to delete.", "error");
  const r = (await api("uploads", "DELETE", `/${state.upload.upload_id}`)).body;
  forgetUpload();
  const what = `${counted(r.sessions_deleted, "sessions")} and ${counted(r.images_deleted, "images")}`;
  say("data-status", `Deleted the selfie, ${what}.`, "ok");
  await refreshUsage();
}

// "1 upload", "4 images", "2 idempotency keys": the answer's counts, said.
function counted(n, key) {
  const noun = key.replace(/_/g, " ");
  return `${n} ${n === 1 ? noun.replace(/s$/, "") : noun}`;
}

async function deleteAccount() {
  const totals = {};
  // Deletion works in bounded batches: `complete: false` means call again.
  for (let round = 0; round < 50; round++) {
    const r = (await api("account", "DELETE", "/")).body;
    for (const [k, v] of Object.entries(r.deleted || {})) totals[k] = (totals[k] || 0) + v;
    if (r.complete) {
      forgetUpload();
      const parts = Object.entries(totals).filter(([, v]) => v > 0).map(([k, v]) => counted(v, k)).join(", ");
      say("data-status", `All your data is deleted (${parts || "nothing was stored"}).`, "ok");
      await refreshUsage();
      return;
    }
  }
  say("data-status", "Deletion is still going after 50 rounds; try again.", "error");
}

// --- start ------------------------------------------------------------------------------

async function start() {
  state.config = await (await fetch("/config.json")).json();
  $("uid").value = `player-${Math.random().toString(36).slice(2, 8)}`;
  $("signin-form").addEventListener("submit", (e) => signIn(e).catch(fail("signin-status")));
  $("file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) uploadSelfie(file).catch((err) => { $("upload-progress").hidden = true; fail("upload-status")(err); });
    e.target.value = "";
  });
  $("sample").addEventListener("click", async () => {
    try {
      const blob = await (await fetch("/sample.png")).blob();
      await uploadSelfie(blob);
    } catch (err) {
      $("upload-progress").hidden = true;
      fail("upload-status")(err);
    }
  });
  $("generate").addEventListener("click", () => generate().catch(fail("generate-status")));
  $("edit-form").addEventListener("submit", (e) => applyEdit(e).catch(fail("edit-status")));
  $("undo").addEventListener("click", undo);
  $("download").addEventListener("click", () => download().catch(fail("edit-status")));
  $("delete-upload").addEventListener("click", () => deleteUpload().catch(fail("data-status")));
  $("delete-account").addEventListener("click", () => deleteAccount().catch(fail("data-status")));
  refreshLocks();
  await loadStyles();
}

start().catch((err) => say("signin-status", `The playground could not start: ${err.message}`, "error"));
