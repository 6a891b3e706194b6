// MIT-TTS-Streamer browser client: WebSocket protocol + Web Audio playback.
//
// Audio is requested as raw PCM (pcm_f32 or pcm) at the voice's own rate: each binary
// frame becomes one AudioBuffer, scheduled right after the previous one, so playback
// starts with the first frame and needs no decoder. An interrupt stops every scheduled
// source at once and drops frames still in flight until the server's `interrupted`
// reply, after which the server guarantees no frame of the request follows.
//
// A server with API keys: the key typed into the page authenticates its REST calls
// (Authorization: Bearer); for the WebSocket, which a browser cannot give headers, the
// page first gets a short-lived token (POST /api/v1/tokens) and offers it as the
// subprotocol "tts.token.<token>" beside "tts.v1" (protocol_docs/security.md).
//
// window.ttsStats exposes the counters the browser test reads.
"use strict";

(() => {
  // Scheduling the first buffer a little ahead of "now" avoids starting in the past
  // (an audible click) when the main thread was busy; 30 ms is below what a listener
  // notices as delay.
  const START_LEAD_S = 0.03;
  // Events kept in the on-page log; older ones are dropped.
  const MAX_LOG_LINES = 200;
  // The WebSocket subprotocol of the API, and the prefix of a token offered beside it.
  const SUBPROTOCOL = "tts.v1";
  const TOKEN_SUBPROTOCOL_PREFIX = "tts.token.";

  const $ = (id) => document.getElementById(id);

  const stats = {
    state: "idle", // idle, connecting, connected, requested, playing, finishing, done,
    //              interrupting, interrupted, error, closed
    connected: false,
    sessionId: null,
    requests: 0,
    buffersDecoded: 0,
    samplesScheduled: 0,
    secondsReceived: 0,
    framesAfterInterrupt: 0,
    framesDiscarded: 0,
    activeSources: 0,
    firstAudioMs: null,
    interruptMs: null,
    errors: [],
    lastEvent: null,
    auth: "none", // none, token: how the WebSocket authenticated
    protocol: null, // the subprotocol the server answered
  };
  window.ttsStats = stats;

  let wsPort = null;
  let socket = null;
  let audio = null;
  let nextStart = 0;
  const sources = new Set();
  let current = null; // {id, sentAt, format, sampleRate, gotAudio, ended}
  let interruptSentAt = null;
  let discarding = false; // between our interrupt and its reply
  let requestSeq = 0;
  let voices = [];

  function log(text, isError = false) {
    const li = document.createElement("li");
    li.textContent = `${new Date().toISOString().slice(11, 23)} ${text}`;
    if (isError) li.className = "error";
    const list = $("log");
    list.appendChild(li);
    while (list.children.length > MAX_LOG_LINES) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
  }

  function setState(state) {
    stats.state = state;
    render();
  }

  function render() {
    const badge = $("state");
    badge.textContent = stats.state;
    badge.className = "badge" + (stats.state === "error" ? " bad" : stats.state === "playing" ? " ok" : "");
    const conn = $("connection");
    conn.textContent = stats.connected ? "connected" : socket ? "connecting" : "disconnected";
    conn.className = "badge" + (stats.connected ? " ok" : "");
    $("session").textContent = stats.sessionId ? `session ${stats.sessionId}` : "";
    $("first-audio").textContent = stats.firstAudioMs === null ? "–" : `${Math.round(stats.firstAudioMs)} ms`;
    $("interrupt-ms").textContent = stats.interruptMs === null ? "–" : `${Math.round(stats.interruptMs)} ms`;
    $("buffers").textContent = String(stats.buffersDecoded);
    $("seconds").textContent = `${stats.secondsReceived.toFixed(1)} s`;
    $("speak").disabled = !stats.connected;
    $("interrupt").disabled = !stats.connected;
    $("connect").textContent = socket ? "Disconnect" : "Connect";
  }

  function authHeaders() {
    const key = $("api-key").value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function requestJson(path, method = "GET") {
    const response = await fetch(path, { method, headers: { Accept: "application/json", ...authHeaders() } });
    const body = await response.json();
    if (!response.ok) {
      const error = new Error(body.error ? `${body.error.code}: ${body.error.message}` : response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  const getJson = (path) => requestJson(path);

  function fillVoices() {
    const language = $("language").value;
    const select = $("voice");
    select.textContent = "";
    voices.filter((v) => v.language === language).forEach((v) => {
      const option = document.createElement("option");
      option.value = v.id;
      option.textContent = `${v.name} (${v.engine}, ${v.quality}, ${v.sample_rate} Hz)`;
      select.appendChild(option);
    });
  }

  async function init() {
    $("language").textContent = "";
    try {
      const status = await getJson("/api/v1/status");
      wsPort = status.websocket_port;
      $("server-info").textContent =
        `v${status.version} · WebSocket port ${wsPort} · ${status.ready ? "ready" : "loading models"}`;
      voices = (await getJson("/api/v1/voices")).voices;
      const languages = [...new Set(voices.map((v) => v.language))].sort();
      const select = $("language");
      languages.forEach((tag) => {
        const option = document.createElement("option");
        option.value = tag;
        option.textContent = tag;
        select.appendChild(option);
      });
      const preferred = languages.find((tag) => tag.split("-")[0] === status.default_language.split("-")[0]);
      if (preferred) select.value = preferred;
      fillVoices();
      log(`${voices.length} voices in ${languages.length} languages`);
    } catch (error) {
      if (error.status === 401) {
        $("server-info").textContent = "this server needs an API key: enter it above";
        log(`status: ${error.message}`);
      } else {
        $("server-info").textContent = `server unreachable: ${error.message}`;
        log(`status failed: ${error.message}`, true);
      }
    }
    render();
  }

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.hostname}:${wsPort}`;
  }

  function stopAll() {
    for (const source of sources) {
      source.onended = null;
      try {
        source.stop();
      } catch (_) {
        // already stopped
      }
    }
    sources.clear();
    stats.activeSources = 0;
    nextStart = 0;
  }

  async function connect() {
    if (socket) {
      socket.close(1000, "user disconnect");
      return;
    }
    if (wsPort === null) {
      log("no WebSocket port known (server status failed)", true);
      return;
    }
    // Created on a click: browsers only let audio start from a user gesture.
    if (!audio) audio = new AudioContext();
    if (audio.state === "suspended") audio.resume();
    setState("connecting");
    const protocols = [SUBPROTOCOL];
    stats.auth = "none";
    if ($("api-key").value.trim()) {
      // The key never goes into the WebSocket: a token made for it, valid a minute.
      try {
        const { token } = await requestJson("/api/v1/tokens", "POST");
        protocols.push(TOKEN_SUBPROTOCOL_PREFIX + token);
        stats.auth = "token";
      } catch (error) {
        log(`token: ${error.message}`, true);
        setState("error");
        return;
      }
    }
    socket = new WebSocket(wsUrl(), protocols);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      stats.protocol = socket.protocol;
      const config = { format: $("format").value, realtime: true };
      if ($("language").value) config.language = $("language").value;
      if ($("voice").value) config.voice_id = $("voice").value;
      socket.send(JSON.stringify({ type: "connect", config }));
    };
    socket.onmessage = (message) => {
      if (typeof message.data === "string") onEvent(JSON.parse(message.data));
      else onAudio(message.data);
    };
    socket.onclose = (event) => {
      log(`connection closed (${event.code}${event.reason ? " " + event.reason : ""})`, event.code !== 1000);
      stopAll();
      socket = null;
      stats.connected = false;
      setState("closed");
    };
    render();
  }

  function speak() {
    const text = $("text").value;
    if (!socket || !stats.connected || !text.trim()) return;
    if (audio.state === "suspended") audio.resume();
    const id = `web-${Date.now().toString(36)}-${++requestSeq}`;
    const config = { format: $("format").value, speed: Number($("speed").value) || 1 };
    if ($("voice").value) config.voice_id = $("voice").value;
    else if ($("language").value) config.language = $("language").value;
    current = { id, sentAt: performance.now(), format: config.format, sampleRate: 0, gotAudio: false, ended: false };
    discarding = false;
    stats.requests += 1;
    stats.firstAudioMs = null;
    stats.framesAfterInterrupt = 0;
    socket.send(JSON.stringify({ type: "synthesize", text, priority: $("priority").value, request_id: id, config }));
    setState("requested");
  }

  function interrupt() {
    if (!socket || !stats.connected) return;
    interruptSentAt = performance.now();
    discarding = true; // frames already in flight belong to what we are stopping
    stopAll();
    socket.send(JSON.stringify({ type: "interrupt", reason: "user_request" }));
    setState("interrupting");
  }

  function decode(data, format) {
    if (format === "pcm_f32") return new Float32Array(data);
    const ints = new Int16Array(data);
    const floats = new Float32Array(ints.length);
    for (let i = 0; i < ints.length; i++) floats[i] = ints[i] / 32768;
    return floats;
  }

  function onAudio(data) {
    // After the `interrupted` reply the server sends nothing more of the request.
    if (stats.state === "interrupted") stats.framesAfterInterrupt += 1;
    if (discarding || !current || !current.sampleRate) {
      stats.framesDiscarded += 1;
      return;
    }
    const samples = decode(data, current.format);
    if (!samples.length) return;
    const buffer = audio.createBuffer(1, samples.length, current.sampleRate);
    buffer.copyToChannel(samples, 0);
    const source = audio.createBufferSource();
    source.buffer = buffer;
    source.connect(audio.destination);
    const startAt = Math.max(nextStart, audio.currentTime + START_LEAD_S);
    source.start(startAt);
    nextStart = startAt + buffer.duration;
    sources.add(source);
    source.onended = () => {
      sources.delete(source);
      stats.activeSources = sources.size;
      if (!sources.size && current && current.ended && stats.state === "finishing") setState("done");
    };
    stats.activeSources = sources.size;
    stats.buffersDecoded += 1;
    stats.samplesScheduled += samples.length;
    stats.secondsReceived += buffer.duration;
    if (!current.gotAudio) {
      current.gotAudio = true;
      stats.firstAudioMs = performance.now() - current.sentAt;
      log(`first audio after ${Math.round(stats.firstAudioMs)} ms`);
      setState("playing");
    } else {
      render();
    }
  }

  function onEvent(event) {
    stats.lastEvent = event.type;
    switch (event.type) {
      case "connected":
        stats.connected = true;
        stats.sessionId = event.session_id;
        log(`connected: session ${event.session_id}, voice ${event.config.voice}`);
        setState("connected");
        break;
      case "queued":
        log(`queued ${event.request_id} at position ${event.position}`);
        break;
      case "audio_start":
        if (current && event.request_id === current.id) {
          current.sampleRate = event.sample_rate;
          current.format = event.format;
        }
        log(`audio_start ${event.request_id}: ${event.format} ${event.sample_rate} Hz, voice ${event.voice}`);
        break;
      case "audio_end":
        log(`audio_end ${event.request_id}: ${event.chunks} frames, ${event.duration_ms} ms`);
        if (current && event.request_id === current.id) {
          current.ended = true;
          setState(sources.size ? "finishing" : "done");
        }
        break;
      case "interrupted":
        if (interruptSentAt !== null && event.reason === "user_request") {
          stats.interruptMs = performance.now() - interruptSentAt;
          interruptSentAt = null;
          discarding = false;
          if (current) current.sampleRate = 0; // nothing of it may play any more
          setState("interrupted");
        }
        log(`interrupted ${event.request_id || "(nothing playing)"}: ${event.reason}` +
          (event.dropped && event.dropped.length ? `, dropped ${event.dropped.join(", ")}` : ""));
        break;
      case "error":
        stats.errors.push(event.code);
        log(`error ${event.code}: ${event.message}`, true);
        if (!stats.connected || (current && event.request_id === current.id)) setState("error");
        break;
      default:
        log(`event ${event.type}`);
    }
    render();
  }

  $("language").addEventListener("change", fillVoices);
  $("api-key").addEventListener("change", init);
  $("connect").addEventListener("click", connect);
  $("speak").addEventListener("click", speak);
  $("interrupt").addEventListener("click", interrupt);
  init();
})();
