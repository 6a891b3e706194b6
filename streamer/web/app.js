// MIT-TTS-Streamer browser client: WebSocket protocol + Web Audio playback.
//
// Audio is requested as raw PCM (pcm_f32 or pcm) at the voice's own rate: each binary
// frame becomes one AudioBuffer, scheduled right after the previous one, so playback
// starts with the first frame and needs no decoder. An interrupt stops every scheduled
// source at once and drops frames still in flight until the server's `interrupted`
// reply, after which the server guarantees no frame of the request follows.
//
// The audio of the last request is also kept (as 16-bit samples) for "Download WAV",
// and plays through one GainNode, the volume control.
// A server with API keys: the key typed into the page authenticates its REST calls
// (Authorization: Bearer); for the WebSocket, which a browser cannot give headers, the
// page first gets a short-lived token (POST /api/v1/tokens) and offers it as the
// subprotocol "tts.token.<token>" beside "tts.v1" (protocol_docs/security.md).
//
// "Stream as typed" sends what is typed into the text box, as it is typed, into one
// streamed-text context (`text` messages with what was added; Speak sends `close`),
// asking for word timestamps: each word is lit while it plays, from the timestamps and
// the times its audio buffers were scheduled at.
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
  // The text offered for a language when the user has not typed their own, by
  // language subtag. Other languages get their own name in their own words (from the
  // browser's Intl data), which at least is a word of that language.
  const SAMPLE_TEXTS = {
    en: "Hello! This page streams speech from the server and plays each piece as soon as it arrives.",
    es: "¡Hola! Esta página recibe la voz del servidor y reproduce cada fragmento en cuanto llega.",
    fr: "Bonjour ! Cette page reçoit la voix du serveur et joue chaque morceau dès qu'il arrive.",
    de: "Hallo! Diese Seite empfängt Sprache vom Server und spielt jedes Stück ab, sobald es ankommt.",
    it: "Ciao! Questa pagina riceve la voce dal server e riproduce ogni frammento appena arriva.",
    pt: "Olá! Esta página recebe a voz do servidor e toca cada trecho assim que ele chega.",
    ca: "Hola! Aquesta pàgina rep la veu del servidor i reprodueix cada fragment tan bon punt arriba.",
    nl: "Hallo! Deze pagina ontvangt spraak van de server en speelt elk stukje af zodra het binnenkomt.",
    pl: "Cześć! Ta strona odbiera mowę z serwera i odtwarza każdy fragment, gdy tylko dotrze.",
    ru: "Привет! Эта страница получает речь с сервера и воспроизводит каждый фрагмент, как только он приходит.",
    ja: "こんにちは。このページはサーバーから音声を受け取り、届いた部分からすぐに再生します。",
    zh: "你好！这个页面从服务器接收语音，每个片段一到就立即播放。",
  };
  // Language names in the page's own language (English), e.g. "es" -> "Spanish".
  const LANGUAGE_NAMES = (() => {
    try {
      return new Intl.DisplayNames(["en"], { type: "language", languageDisplay: "standard" });
    } catch (_) {
      return null; // an old browser: the bare tags are shown
    }
  })();
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
    notice: null, // why the last click did nothing: "empty_text", "not_connected"
    volume: 1,
    outputGain: null, // the GainNode's value once audio has started
    spokenSamples: 0, // samples of the last request kept for "Download WAV"
    auth: "none", // none, token: how the WebSocket authenticated
    protocol: null, // the subprotocol the server answered
    streamedTexts: 0, // `text` messages sent by "Stream as typed"
    wordsTimed: 0, // words received in `timestamps` events
    wordsLit: 0, // of them, those whose time has come in playback
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
  let gain = null; // the volume control, between every source and the speakers
  let sample = ""; // the sample text now offered, replaced when the language changes
  // The language value that asks the server to detect each text's language.
  const AUTO = "auto";
  // The last request's audio as 16-bit chunks, for "Download WAV".
  let spoken = { id: null, sampleRate: 0, chunks: [] };
  let downloadUrl = null;
  // The context "Stream as typed" feeds: its id and the text already sent.
  let streaming = null;
  // Text of the box that was there before the context began or was edited away:
  // only what is added after it is sent.
  let streamBase = "";
  // Word highlighting: the words timed so far, and where each scheduled buffer of the
  // current request sits in its timeline ({ms, at}: ms of the request at audio time at).
  let timed = [];
  let placed = [];

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
    $("speak").disabled = wsPort === null;
    $("speak").title = stats.connected ? "" : "Connect first";
    $("interrupt").disabled = !stats.connected;
    $("download").disabled = stats.spokenSamples === 0;
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

  function showNotice(code, text) {
    stats.notice = code;
    const notice = $("notice");
    notice.textContent = text || "";
    notice.hidden = !text;
  }

  function languageName(tag) {
    try {
      const name = LANGUAGE_NAMES && LANGUAGE_NAMES.of(tag);
      if (name && name.toLowerCase() !== tag.toLowerCase()) return name;
    } catch (_) {
      // a tag Intl does not accept (private use): the tag itself
    }
    return tag;
  }

  function sampleFor(tag) {
    const primary = tag.split("-")[0].toLowerCase();
    if (SAMPLE_TEXTS[primary]) return SAMPLE_TEXTS[primary];
    try {
      const own = new Intl.DisplayNames([tag], { type: "language" }).of(tag);
      if (own && own.toLowerCase() !== tag.toLowerCase()) return `${own}.`;
    } catch (_) {
      // no name for it in its own language
    }
    return SAMPLE_TEXTS.en;
  }

  function offerSample() {
    // Only replace what the page put there: never the user's own text.
    const text = $("text");
    if (text.value.trim() && text.value !== sample) return;
    const language = $("language").value;
    if (language === AUTO) return; // any language will do: keep what is there
    sample = language ? sampleFor(language) : "";
    text.value = sample;
  }

  function onLanguageChange() {
    fillVoices();
    offerSample();
  }
  const getJson = (path) => requestJson(path);

  function fillVoices() {
    const language = $("language").value;
    const select = $("voice");
    select.textContent = "";
    voices.filter((v) => v.language === language).forEach((v) => {
      const option = document.createElement("option");
      option.value = v.id;
      option.textContent = `${v.name} (${v.engine}, ${v.quality}, ${v.sample_rate} Hz)` +
        (v.default ? " · default" : "");
      // The list is in order of quality; the server's default for the language (the
      // best voice that keeps real time here) is preselected, not the first entry.
      option.selected = Boolean(v.default);
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
      const languages = [...new Set(voices.map((v) => v.language))]
        .map((tag) => ({ tag, name: languageName(tag) }))
        .sort((a, b) => a.name.localeCompare(b.name, "en") || a.tag.localeCompare(b.tag));
      const select = $("language");
      select.textContent = ""; // init runs again when the API key changes
      const auto = document.createElement("option");
      auto.value = AUTO;
      auto.textContent = "Auto-detect (from the text)";
      select.appendChild(auto);
      languages.forEach(({ tag, name }) => {
        const option = document.createElement("option");
        option.value = tag;
        option.textContent = name === tag ? tag : `${name} · ${tag}`;
        select.appendChild(option);
      });
      const wanted = status.default_language.split("-")[0];
      const preferred = languages.find(({ tag }) => tag === status.default_language) ||
        languages.find(({ tag }) => tag.split("-")[0] === wanted);
      if (preferred) select.value = preferred.tag;
      onLanguageChange();
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
    if (!audio) {
      audio = new AudioContext();
      gain = audio.createGain();
      gain.gain.value = stats.volume;
      gain.connect(audio.destination);
      stats.outputGain = gain.gain.value;
    }
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

  function requestConfig() {
    const config = { format: $("format").value, speed: Number($("speed").value) || 1 };
    if ($("voice").value) config.voice_id = $("voice").value;
    else if ($("language").value) config.language = $("language").value;
    return config;
  }

  function begin(id, format) {
    current = { id, sentAt: performance.now(), format, sampleRate: 0, gotAudio: false, ended: false, ms: 0 };
    spoken = { id, sampleRate: 0, chunks: [] };
    stats.spokenSamples = 0;
    discarding = false;
    stats.requests += 1;
    stats.firstAudioMs = null;
    stats.framesAfterInterrupt = 0;
    timed = [];
    placed = [];
    stats.wordsTimed = 0;
    stats.wordsLit = 0;
    $("words").replaceChildren();
  }

  // "Stream as typed": send what was added to the box since the last call.
  function streamTyped() {
    if (!$("stream-typed").checked || !socket || !stats.connected) return;
    const value = $("text").value;
    const sent = streaming ? streaming.sent : streamBase;
    if (!value.startsWith(sent)) {
      // An edit of what was already sent: that cannot be unsaid. End this context;
      // what is typed after the edit goes to the next one.
      endStream();
      streamBase = value;
      return;
    }
    const piece = value.slice(sent.length);
    if (!piece) return;
    const message = { type: "text", text: piece };
    if (!streaming) {
      if (!piece.trim()) return;
      const id = `web-ctx-${Date.now().toString(36)}-${++requestSeq}`;
      const config = { ...requestConfig(), timestamps: "word" };
      begin(id, config.format);
      streaming = { id, sent };
      message.config = config;
      message.priority = $("priority").value;
      $("words").hidden = false;
      setState("requested");
    }
    message.context_id = streaming.id;
    socket.send(JSON.stringify(message));
    streaming.sent = value;
    stats.streamedTexts += 1;
  }

  // End of input: the server speaks what it holds, then audio_end.
  function endStream() {
    if (!streaming) return;
    if (socket) socket.send(JSON.stringify({ type: "close", context_id: streaming.id }));
    streamBase = streaming.sent;
    streaming = null;
  }

  function onWords(event) {
    if (!current || event.request_id !== current.id) return;
    for (const word of event.words) {
      const span = document.createElement("span");
      span.textContent = word.word;
      $("words").append(span, " ");
      timed.push({ start: word.start_ms, end: word.end_ms, span });
    }
    stats.wordsTimed = timed.length;
  }

  // Light the words whose time has come: the request's time now is read from the
  // buffer playing now (underruns shift later buffers, so one start time would drift).
  function lightWords() {
    requestAnimationFrame(lightWords);
    if (!audio || !placed.length || !timed.length) return;
    const now = audio.currentTime;
    let last = null;
    for (const p of placed) {
      if (p.at > now) break;
      last = p;
    }
    if (!last) return;
    const ms = last.ms + (now - last.at) * 1000;
    let lit = 0;
    for (const word of timed) {
      const playing = word.start <= ms && ms < word.end;
      word.span.classList.toggle("now", playing);
      word.span.classList.toggle("spoken", word.start <= ms && !playing);
      if (word.start <= ms) lit += 1;
    }
    stats.wordsLit = lit;
  }

  function speak() {
    if (streaming) {
      endStream();
      return;
    }
    const text = $("text").value;
    if (!socket || !stats.connected) {
      showNotice("not_connected", "Press Connect first.");
      return;
    }
    if (!text.trim()) {
      showNotice("empty_text", "Type some text to speak first.");
      $("text").focus();
      return;
    }
    showNotice(null, "");
    if (audio.state === "suspended") audio.resume();
    const id = `web-${Date.now().toString(36)}-${++requestSeq}`;
    const config = requestConfig();
    begin(id, config.format);
    $("words").hidden = true;
    socket.send(JSON.stringify({ type: "synthesize", text, priority: $("priority").value, request_id: id, config }));
    setState("requested");
  }

  function interrupt() {
    if (!socket || !stats.connected) return;
    // The interrupt ends the context being typed into; typing goes on in a new one.
    if (streaming) {
      streamBase = streaming.sent;
      streaming = null;
    }
    interruptSentAt = performance.now();
    discarding = true; // frames already in flight belong to what we are stopping
    stopAll();
    socket.send(JSON.stringify({ type: "interrupt", reason: "user_request" }));
    setState("interrupting");
  }

  function setVolume() {
    stats.volume = Number($("volume").value);
    $("volume-value").textContent = `${Math.round(stats.volume * 100)} %`;
    if (gain) gain.gain.value = stats.volume;
    stats.outputGain = gain ? gain.gain.value : null;
  }

  // The same rounding as the server's 16-bit formats, so a pcm_f32 request downloads
  // the samples a wav request would have given.
  function toInt16(data, format) {
    if (format !== "pcm_f32") return new Int16Array(data.slice(0));
    const floats = new Float32Array(data);
    const ints = new Int16Array(floats.length);
    for (let i = 0; i < floats.length; i++) {
      ints[i] = Math.round(Math.max(-1, Math.min(1, floats[i])) * 32767);
    }
    return ints;
  }

  // A whole WAV file: its header states the exact length (unlike a streamed one).
  function wavBlob(chunks, sampleRate) {
    const count = chunks.reduce((n, chunk) => n + chunk.length, 0);
    const header = new DataView(new ArrayBuffer(44));
    const ascii = (offset, text) => [...text].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
    ascii(0, "RIFF");
    header.setUint32(4, 36 + count * 2, true);
    ascii(8, "WAVE");
    ascii(12, "fmt ");
    header.setUint32(16, 16, true); // fmt chunk size
    header.setUint16(20, 1, true); // PCM
    header.setUint16(22, 1, true); // mono
    header.setUint32(24, sampleRate, true);
    header.setUint32(28, sampleRate * 2, true); // bytes per second
    header.setUint16(32, 2, true); // bytes per frame
    header.setUint16(34, 16, true); // bits per sample
    ascii(36, "data");
    header.setUint32(40, count * 2, true);
    // Int16Array is little-endian on every platform a browser runs on.
    return new Blob([header.buffer, ...chunks], { type: "audio/wav" });
  }

  function download() {
    if (!stats.spokenSamples) return;
    // Revoking a blob URL at once can cancel its download: free the previous one now.
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(wavBlob(spoken.chunks, spoken.sampleRate));
    const link = document.createElement("a");
    link.href = downloadUrl;
    link.download = `${spoken.id}.wav`;
    document.body.appendChild(link);
    link.click();
    link.remove();
    log(`downloaded ${spoken.id}.wav: ${(stats.spokenSamples / spoken.sampleRate).toFixed(2)} s`);
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
    if (spoken.id === current.id) {
      spoken.sampleRate = current.sampleRate;
      spoken.chunks.push(toInt16(data, current.format));
      stats.spokenSamples += samples.length;
    }
    const buffer = audio.createBuffer(1, samples.length, current.sampleRate);
    buffer.copyToChannel(samples, 0);
    const source = audio.createBufferSource();
    source.buffer = buffer;
    source.connect(gain);
    const startAt = Math.max(nextStart, audio.currentTime + START_LEAD_S);
    source.start(startAt);
    nextStart = startAt + buffer.duration;
    placed.push({ ms: current.ms, at: startAt });
    current.ms += buffer.duration * 1000;
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
        if (streaming && event.request_id === streaming.id) {
          // Over (closed for being idle, say): typing goes on in a new context.
          streamBase = streaming.sent;
          streaming = null;
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
      case "timestamps":
        onWords(event);
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

  $("language").addEventListener("change", onLanguageChange);
  $("api-key").addEventListener("change", init);
  $("connect").addEventListener("click", connect);
  $("speak").addEventListener("click", speak);
  $("interrupt").addEventListener("click", interrupt);
  $("download").addEventListener("click", download);
  $("volume").addEventListener("input", setVolume);
  $("text").addEventListener("input", () => {
    if (stats.notice === "empty_text" && $("text").value.trim()) showNotice(null, "");
    streamTyped();
  });
  $("stream-typed").addEventListener("change", () => {
    if ($("stream-typed").checked) streamBase = $("text").value; // only new typing
    else endStream();
  });
  requestAnimationFrame(lightWords);
  init();
})();
