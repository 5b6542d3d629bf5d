// VTO Stream try-on page: camera (or photo) frames to the gateway over a WebSocket, rendered frames back.
// The protocol is docs/gateway.md. Plain script, no build step, no external resources.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    status: $('status'),
    message: $('message'),
    consentPanel: $('consent-panel'),
    consentYes: $('consent-yes'),
    consentNo: $('consent-no'),
    camera: $('camera'),
    photoPreview: $('photo-preview'),
    cameraPlaceholder: $('camera-placeholder'),
    cameraPlaceholderText: $('camera-placeholder-text'),
    photoShortcut: $('photo-shortcut'),
    rendered: $('rendered'),
    renderedPlaceholder: $('rendered-placeholder'),
    latency: $('latency'),
    fps: $('fps'),
    stats: $('stats'),
    advice: $('advice'),
    height: $('height'),
    fit: $('fit'),
    photoInput: $('photo-input'),
    photoMode: $('photo-mode'),
    cameraMode: $('camera-mode'),
    stop: $('stop'),
    catalogue: $('catalogue'),
    addToCart: $('add-to-cart'),
    buy: $('buy'),
    cartNote: $('cart-note'),
  };
  const params = new URLSearchParams(location.search);
  const now = () => performance.now();
  const wallMs = () => performance.timeOrigin + performance.now(); // the page's clock, as the protocol says

  const MAX_WIDTH = 640;
  const JPEG_QUALITY = 0.8;
  const KEEP_CAPTURED = 90; // ~6 s of frames at 15 fps: the one a late rendered frame was made from is still here
  const BUSY_HOLD_MS = 5000; // a busy status shows this long unless a newer status says "ok"
  const BUSY_STATUSES = new Set(['over_capacity', 'rate_limited', 'degraded', 'refused']);

  // ---- the test hook: also the page's own record of what it sent and showed ----
  const captured = []; // [{seq, captureMs, blob}], the last KEEP_CAPTURED frames sent
  const vto = {
    state: 'starting',
    sessionId: null,
    framesSent: 0,
    framesShown: 0,
    latencyMs: null,
    lastShown: null, // {seq, captureMs, shownMs}
    selectedItem: null,
    capturedFrameDataURL(seq) {
      const frame = captured.find((f) => f.seq === seq);
      if (!frame) return Promise.resolve(null);
      return new Promise((resolve) => {
        const reader = new FileReader();
        reader.onload = () => resolve(typeof reader.result === 'string' ? reader.result : null);
        reader.onerror = () => resolve(null);
        reader.readAsDataURL(frame.blob);
      });
    },
    renderedDataURL() {
      return el.rendered.toDataURL('image/jpeg');
    },
  };
  window.vto = vto;

  // ---- page state ----
  let consent = false;
  let pendingPhoto = false; // a photo was chosen before consent: use it once consent is given
  let source = null; // 'camera' | 'photo' | null
  let cameraStream = null;
  let cameraProblem = null; // text when getUserMedia failed
  let photoFrame = null; // {blob, bytes}
  let session = null; // {id, token, expires}
  let ws = null;
  let wsOpen = false;
  let started = false; // the start message went out on this socket
  let tokenRefused = false;
  let connectGeneration = 0;
  let reconnecting = false;
  let attempt = 0;
  let reconnectTimer = null;
  let maxFps = 15;
  let rateFactor = 1; // lowered when the gateway says too_many_frames
  let quality = JPEG_QUALITY; // lowered when the gateway says frame_too_large
  let busyUntil = 0;
  let busyDetail = '';
  let captureTimer = null;
  let nextCapture = 0;
  let sending = false;
  let avgFrameBytes = 40000;
  let pendingRendered = null;
  let decoding = false;
  let messageTimer = null;
  let catalogueItems = [];
  let catalogueReady = Promise.resolve();
  const latencies = [];
  const shownTimes = [];
  const grab = document.createElement('canvas'); // the offscreen canvas frames are encoded from

  // ---- state shown on #status ----
  const STATE_TEXT = {
    starting: 'Starting…',
    'no-consent': 'Camera off: waiting for your consent',
    'no-camera': 'No camera available: try a photo instead',
    live: 'Live',
    busy: 'Server busy, trying again…',
    reconnecting: 'Connection lost, reconnecting…',
    photo: 'Trying on your photo',
  };

  function isBusy() {
    return busyUntil > now();
  }

  function updateState() {
    let state;
    if (!consent) state = 'no-consent';
    else if (source === null && cameraProblem) state = 'no-camera';
    else if (isBusy()) state = 'busy';
    else if (reconnecting) state = 'reconnecting';
    else if (wsOpen && source === 'photo') state = 'photo';
    else if (wsOpen && source === 'camera') state = 'live';
    else state = 'starting';
    let text = STATE_TEXT[state];
    if (state === 'no-camera') text = `${cameraProblem}: try a photo instead`;
    if (state === 'busy' && busyDetail) text = `${STATE_TEXT.busy} (${busyDetail})`;
    if (vto.state !== state || el.status.textContent !== text) {
      vto.state = state;
      el.status.dataset.state = state;
      el.status.textContent = text;
    }
    document.body.dataset.source = source || '';
    document.body.dataset.state = state;
    el.cameraPlaceholderText.textContent =
      state === 'no-camera'
        ? 'No camera here. Try items on a photo of yourself instead.'
        : source === null && consent
          ? 'Waiting for the camera…'
          : 'Your camera preview appears here.';
    el.cameraPlaceholder.hidden = source !== null;
    el.photoShortcut.hidden = state !== 'no-camera';
    el.stop.hidden = !consent;
    el.cameraMode.hidden = source !== 'photo' || !hasCameraApi();
    const canShop = wsOpen && started && !!vto.selectedItem; // the gateway takes a cart only after start
    el.addToCart.disabled = !canShop;
    el.buy.disabled = !canShop;
  }

  function showMessage(text, ms = 4000) {
    el.message.textContent = text;
    el.message.hidden = false;
    clearTimeout(messageTimer);
    messageTimer = setTimeout(() => {
      el.message.hidden = true;
    }, ms);
  }

  // ---- catalogue ----
  const CATEGORY_LABELS = {
    top: 'Tops',
    dress: 'Dresses',
    hat: 'Hats',
    shoes: 'Shoes',
    glasses: 'Glasses',
    earrings: 'Earrings',
    necklace: 'Necklaces',
    ring: 'Rings',
    watch: 'Watches',
    lipstick: 'Lipstick',
  };
  const categoryLabel = (c) => CATEGORY_LABELS[c] || (c ? c.charAt(0).toUpperCase() + c.slice(1) : 'Other');

  async function loadCatalogue() {
    el.catalogue.setAttribute('aria-busy', 'true');
    try {
      const response = await fetch('/api/catalogue', { headers: { Accept: 'application/json' } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      catalogueItems = Array.isArray(data.items) ? data.items.filter((i) => i && i.id) : [];
    } catch (e) {
      catalogueItems = [];
      const p = document.createElement('p');
      p.textContent = 'The catalogue could not be loaded. ';
      const retry = document.createElement('button');
      retry.type = 'button';
      retry.textContent = 'Try again';
      retry.addEventListener('click', () => {
        catalogueReady = loadCatalogue();
      });
      p.append(retry);
      el.catalogue.replaceChildren(p);
      el.catalogue.setAttribute('aria-busy', 'false');
      if (!vto.selectedItem && params.get('item')) selectItem(params.get('item'), false);
      return;
    }
    renderCatalogue();
    const wanted = params.get('item');
    let first = vto.selectedItem || wanted;
    if (first && !catalogueItems.some((i) => i.id === first)) {
      if (first === wanted) showMessage(`The item “${wanted}” is not in the catalogue; showing the first one.`);
      first = null;
    }
    if (!first && catalogueItems.length) first = catalogueItems[0].id;
    if (first) selectItem(first, true); // sent only when a socket has already started (a retried load)
  }

  function renderCatalogue() {
    const groups = new Map();
    for (const item of catalogueItems) {
      const key = item.category || 'other';
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(item);
    }
    const parts = [];
    for (const [category, items] of groups) {
      const section = document.createElement('section');
      section.className = 'category';
      const heading = document.createElement('h3');
      heading.id = `category-${category.replace(/[^a-z0-9_-]/gi, '-')}`;
      heading.textContent = categoryLabel(category);
      section.setAttribute('aria-labelledby', heading.id);
      const list = document.createElement('ul');
      list.className = 'items';
      for (const item of items) {
        const li = document.createElement('li');
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'item';
        button.dataset.itemId = item.id;
        button.setAttribute('aria-pressed', 'false');
        const img = document.createElement('img');
        img.src = item.image || `/api/catalogue/${encodeURIComponent(item.id)}/image`;
        img.alt = '';
        img.width = 72;
        img.height = 72;
        img.loading = 'lazy';
        img.decoding = 'async';
        const name = document.createElement('span');
        name.className = 'name';
        name.textContent = item.name || item.id;
        button.append(img, name);
        li.append(button);
        list.append(li);
      }
      section.append(heading, list);
      parts.push(section);
    }
    if (!parts.length) {
      const p = document.createElement('p');
      p.className = 'muted';
      p.textContent = 'The catalogue is empty.';
      parts.push(p);
    }
    el.catalogue.replaceChildren(...parts);
    el.catalogue.setAttribute('aria-busy', 'false');
    markSelected();
  }

  function markSelected() {
    for (const button of el.catalogue.querySelectorAll('button.item')) {
      const on = button.dataset.itemId === vto.selectedItem;
      button.classList.toggle('selected', on);
      button.setAttribute('aria-pressed', String(on));
    }
  }

  function selectItem(id, send) {
    if (!id) return;
    const changed = id !== vto.selectedItem;
    vto.selectedItem = id;
    markSelected();
    if (changed) resetAdvice();
    try {
      const url = new URL(location.href);
      url.searchParams.set('item', id);
      history.replaceState(history.state, '', url);
    } catch (e) {
      /* a sandboxed page may refuse; the link is a nicety */
    }
    if (send && changed && started) sendJson({ action: 'select_item', item_id: id });
    if (changed) el.cartNote.hidden = true;
    updateState();
  }

  // ---- cart and purchase: what the shopper did with the item tried on, for analytics ----
  function sendCommerce(action) {
    const id = vto.selectedItem;
    if (!id || !started || !ws || ws.readyState !== WebSocket.OPEN) return;
    sendJson({ action, item_id: id, quantity: 1 });
    const item = selectedCatalogueItem();
    const name = item ? item.name || item.id : id;
    el.cartNote.textContent = action === 'purchase' ? `Bought “${name}”.` : `Added “${name}” to the cart.`;
    el.cartNote.hidden = false;
  }

  // ---- size advice ----
  function selectedCatalogueItem() {
    return catalogueItems.find((i) => i.id === vto.selectedItem) || null;
  }

  function resetAdvice() {
    const item = selectedCatalogueItem();
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent =
      item && item.sized === false
        ? 'This item comes in one size.'
        : 'Advice appears once you are in view.';
    el.advice.replaceChildren(p);
  }

  function renderAdvice(msg) {
    if (msg.item_id && msg.item_id !== vto.selectedItem) return; // about an item no longer selected
    const parts = [];
    if (!msg.size) {
      const p = document.createElement('p');
      p.className = 'muted';
      p.textContent = 'No size advice for this item.';
      el.advice.replaceChildren(p);
      return;
    }
    const size = document.createElement('p');
    size.className = 'advice-size';
    size.append('Suggested size ');
    const strong = document.createElement('strong');
    strong.textContent = String(msg.size);
    size.append(strong);
    parts.push(size);
    if (msg.runner_up) {
      const runner = document.createElement('p');
      runner.className = 'advice-runner';
      runner.textContent = `Also worth trying: ${msg.runner_up}`;
      parts.push(runner);
    }
    const c = Number(msg.confidence);
    if (Number.isFinite(c)) {
      const pct = Math.round(Math.max(0, Math.min(1, c)) * 100);
      const conf = document.createElement('p');
      conf.className = 'advice-confidence';
      const label = c >= 0.7 ? 'high' : c >= 0.4 ? 'medium' : 'low';
      const meter = document.createElement('meter');
      meter.min = 0;
      meter.max = 100;
      meter.low = 40;
      meter.high = 70;
      meter.optimum = 100;
      meter.value = pct;
      meter.textContent = `${pct}%`;
      meter.setAttribute('aria-hidden', 'true'); // the text says it
      conf.append(`Confidence ${pct}% (${label}) `, meter);
      parts.push(conf);
    }
    if (Array.isArray(msg.reasons) && msg.reasons.length) {
      const list = document.createElement('ul');
      list.className = 'advice-reasons';
      for (const reason of msg.reasons) {
        const li = document.createElement('li');
        li.textContent = String(reason);
        list.append(li);
      }
      parts.push(list);
    }
    el.advice.replaceChildren(...parts);
  }

  function fitOptions() {
    const out = {};
    const h = Number(el.height.value);
    if (el.height.value !== '' && Number.isFinite(h) && h >= 100 && h <= 230) out.height_cm = Math.round(h);
    if (['regular', 'loose', 'tight'].includes(el.fit.value)) out.fit = el.fit.value;
    return out;
  }

  // ---- session and socket ----
  function hasCameraApi() {
    return !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  }

  async function createSession() {
    const response = await fetch('/api/sessions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ consent: true, ...fitOptions() }),
    });
    if (!response.ok) {
      const error = new Error(`HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    const data = await response.json();
    if (!data.session_id || !data.token) throw new Error('no session in the answer');
    return { id: data.session_id, token: data.token, expires: Number(data.expires_unix) || Infinity };
  }

  async function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (!consent) return;
    const generation = ++connectGeneration;
    try {
      if (!session || tokenRefused || session.expires - 10 < Date.now() / 1000) {
        session = null;
        tokenRefused = false;
        session = await createSession();
      }
    } catch (e) {
      if (generation !== connectGeneration || !consent) return;
      if (e.status === 403) {
        withdrawConsent('The try-on needs your consent first.');
        return;
      }
      if (e.status === 429 || e.status === 503) {
        busyUntil = now() + BUSY_HOLD_MS;
        busyDetail = '';
      }
      scheduleReconnect();
      return;
    }
    if (generation !== connectGeneration || !consent) return;
    vto.sessionId = session.id;
    openSocket(session);
  }

  function openSocket(s) {
    const url = new URL('/ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = '';
    url.searchParams.set('session', s.id);
    url.searchParams.set('token', s.token);
    let sock;
    try {
      sock = new WebSocket(url.href);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    sock.binaryType = 'arraybuffer';
    ws = sock;
    started = false;
    let openedAt = 0;
    sock.onopen = () => {
      if (ws !== sock) return;
      wsOpen = true;
      openedAt = now();
      reconnecting = false;
      updateState();
      sendStart(sock);
    };
    sock.onmessage = (event) => {
      if (ws !== sock) return;
      if (typeof event.data === 'string') onText(event.data);
      else if (event.data instanceof ArrayBuffer) onRendered(event.data);
    };
    sock.onerror = () => {
      /* the close that follows decides */
    };
    sock.onclose = (event) => {
      if (ws !== sock) return;
      ws = null;
      wsOpen = false;
      started = false;
      if (!consent) {
        updateState();
        return;
      }
      // 4401: the token is refused; 4409: something else holds this session now. Either way, a new session
      // (re-opening this one would take it back and forth).
      if (event.code === 4401 || event.code === 4409) tokenRefused = true;
      if (openedAt && now() - openedAt > 5000) attempt = 0; // it had worked: start the backoff over
      scheduleReconnect();
    };
  }

  async function sendStart(sock) {
    // the first item comes from the catalogue; do not wait for it forever
    await Promise.race([catalogueReady.catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
    if (ws !== sock || sock.readyState !== WebSocket.OPEN) return;
    const message = { action: 'start', ...fitOptions() };
    if (vto.selectedItem) message.item_id = vto.selectedItem;
    sock.send(JSON.stringify(message));
    started = true;
    updateState();
    nextCapture = 0;
    scheduleCapture();
  }

  function sendJson(message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  function scheduleReconnect() {
    if (!consent) return;
    reconnecting = true;
    const base = Math.min(5000, 500 * 2 ** attempt);
    const delay = Math.max(500, Math.round(base * (1 - Math.random() * 0.2)));
    attempt = Math.min(attempt + 1, 10);
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delay);
    updateState();
  }

  function closeSocket() {
    const sock = ws;
    ws = null;
    wsOpen = false;
    started = false;
    if (sock) {
      try {
        if (sock.readyState === WebSocket.OPEN) sock.send(JSON.stringify({ action: 'end' }));
        sock.close(1000, 'end');
      } catch (e) {
        /* already closing */
      }
    }
  }

  const ERROR_TEXT = {
    bad_frame: 'A frame could not be read; carrying on.',
    not_jpeg: 'A frame could not be read; carrying on.',
    frame_too_large: 'Frames are too large; lowering the quality.',
    too_many_frames: 'Sending too fast; slowing down.',
    unknown_item: 'That item is not available.',
    malformed_json: 'The page and the server disagree; try reloading.',
    unknown_action: 'The page and the server disagree; try reloading.',
    bad_commerce: 'The cart could not take that; try again.',
    bad_token: 'The session expired; starting a new one.',
  };

  function onText(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'hello': {
        const fps = Number(msg.max_fps);
        if (Number.isFinite(fps) && fps > 0) maxFps = fps;
        if (msg.session_id) vto.sessionId = msg.session_id;
        break;
      }
      case 'advice':
        renderAdvice(msg);
        break;
      case 'status':
        if (msg.status === 'ok') {
          busyUntil = 0;
          busyDetail = '';
        } else if (BUSY_STATUSES.has(msg.status)) {
          busyUntil = now() + BUSY_HOLD_MS;
          busyDetail = typeof msg.detail === 'string' ? msg.detail.slice(0, 120) : '';
        }
        updateState();
        break;
      case 'error':
        if (msg.error === 'bad_token') tokenRefused = true;
        if (msg.error === 'frame_too_large') quality = Math.max(0.5, quality - 0.1);
        if (msg.error === 'too_many_frames') rateFactor = Math.max(0.3, rateFactor * 0.85);
        showMessage(ERROR_TEXT[msg.error] || msg.message || 'Something went wrong.');
        break;
      case 'stats':
        if (Number.isFinite(msg.frames_in) && Number.isFinite(msg.frames_out)) {
          el.stats.textContent = `${msg.frames_out}/${msg.frames_in} rendered`;
        }
        break;
      default:
        break;
    }
  }

  // ---- rendered frames ----
  function onRendered(buffer) {
    if (buffer.byteLength <= 12) return;
    const view = new DataView(buffer);
    const captureMs = view.getFloat64(0, false);
    const seq = view.getUint32(8, false);
    pendingRendered = { captureMs, seq, jpeg: new Uint8Array(buffer, 12) }; // only the newest waits
    if (!decoding) drawRendered();
  }

  async function drawRendered() {
    decoding = true;
    while (pendingRendered) {
      const frame = pendingRendered;
      pendingRendered = null;
      if (vto.lastShown && frame.captureMs < vto.lastShown.captureMs) continue; // older than what is shown
      let bitmap;
      try {
        bitmap = await createImageBitmap(new Blob([frame.jpeg], { type: 'image/jpeg' }));
      } catch (e) {
        continue;
      }
      if (!consent) {
        bitmap.close();
        break;
      }
      const canvas = el.rendered;
      if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
      }
      canvas.getContext('2d').drawImage(bitmap, 0, 0);
      bitmap.close();
      el.renderedPlaceholder.hidden = true;
      const shownMs = wallMs();
      // the page's own sequence number of that frame (the gateway's may restart on a new socket)
      const sent = captured.find((f) => Math.abs(f.captureMs - frame.captureMs) < 0.5);
      vto.framesShown += 1;
      vto.lastShown = { seq: sent ? sent.seq : frame.seq, captureMs: frame.captureMs, shownMs };
      if (frame.captureMs > 0) {
        latencies.push(shownMs - frame.captureMs);
        if (latencies.length > 15) latencies.shift();
        const sorted = [...latencies].sort((a, b) => a - b);
        vto.latencyMs = Math.round(sorted[Math.floor(sorted.length / 2)]);
        el.latency.textContent = `latency ${vto.latencyMs} ms`;
      }
      shownTimes.push(now());
      updateFps();
    }
    decoding = false;
  }

  function updateFps() {
    const t = now();
    while (shownTimes.length && t - shownTimes[0] > 2000) shownTimes.shift();
    // frames over the time they span, up to now (so it falls when frames stop), within the last 2 s
    const fps = shownTimes.length >= 2 ? ((shownTimes.length - 1) * 1000) / Math.max(t - shownTimes[0], 1) : 0;
    el.fps.textContent = `${fps.toFixed(1)} fps`;
  }

  function clearRendered() {
    const canvas = el.rendered;
    canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
    el.renderedPlaceholder.hidden = false;
    pendingRendered = null;
    latencies.length = 0;
    shownTimes.length = 0;
    vto.latencyMs = null;
    el.latency.textContent = 'latency – ms';
    updateFps();
  }

  // ---- capture and send ----
  function frameInterval() {
    if (source === 'photo') return 1000;
    let interval = 1000 / (maxFps * rateFactor);
    if (isBusy()) interval *= 2; // ease off while the server is struggling
    return interval;
  }

  function scheduleCapture() {
    clearTimeout(captureTimer);
    captureTimer = setTimeout(captureTick, Math.max(0, nextCapture - now()));
  }

  function canvasToBlob(canvas, q) {
    return new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', q));
  }

  async function captureTick() {
    captureTimer = null;
    if (!consent) return;
    nextCapture = now() + frameInterval();
    scheduleCapture();
    const sock = ws;
    if (!sock || !wsOpen || !started || sock.readyState !== WebSocket.OPEN || document.hidden) return;
    if (sending) return; // the previous frame is still being encoded: skip
    if (sock.bufferedAmount > 2 * avgFrameBytes) return; // more than ~2 frames not yet out: skip
    sending = true;
    try {
      let blob;
      let bytes;
      let captureMs;
      if (source === 'camera') {
        const video = el.camera;
        if (video.readyState < 2 || !video.videoWidth) return;
        const width = Math.min(MAX_WIDTH, video.videoWidth);
        const height = Math.max(1, Math.round((video.videoHeight * width) / video.videoWidth));
        if (grab.width !== width || grab.height !== height) {
          grab.width = width;
          grab.height = height;
        }
        captureMs = wallMs();
        grab.getContext('2d').drawImage(video, 0, 0, width, height);
        blob = await canvasToBlob(grab, quality);
        if (!blob) return;
        bytes = new Uint8Array(await blob.arrayBuffer());
      } else if (source === 'photo' && photoFrame) {
        captureMs = wallMs(); // a fresh capture time for each send of the same photo
        blob = photoFrame.blob;
        bytes = photoFrame.bytes;
      } else {
        return;
      }
      if (ws !== sock || sock.readyState !== WebSocket.OPEN) return;
      const out = new Uint8Array(8 + bytes.length);
      new DataView(out.buffer).setFloat64(0, captureMs, false);
      out.set(bytes, 8);
      sock.send(out.buffer);
      const seq = vto.framesSent;
      vto.framesSent += 1;
      captured.push({ seq, captureMs, blob });
      if (captured.length > KEEP_CAPTURED) captured.shift();
      avgFrameBytes = 0.8 * avgFrameBytes + 0.2 * out.length;
    } finally {
      sending = false;
    }
  }

  // ---- camera ----
  async function startCamera() {
    cameraProblem = null;
    if (!hasCameraApi()) {
      cameraProblem = window.isSecureContext ? 'This browser has no camera access' : 'The camera needs a secure (https) page';
      updateState();
      return;
    }
    updateState();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: 'user', width: { ideal: 640 }, height: { ideal: 480 } },
        audio: false,
      });
    } catch (e) {
      const name = e && e.name;
      cameraProblem =
        name === 'NotAllowedError' || name === 'SecurityError'
          ? 'Camera access was not allowed'
          : name === 'NotFoundError' || name === 'OverconstrainedError'
            ? 'No camera found'
            : name === 'NotReadableError'
              ? 'The camera is in use by another app'
              : 'The camera could not start';
      if (consent && source === null) el.photoMode.closest('.panel').classList.add('highlight');
      updateState();
      return;
    }
    if (!consent || source === 'photo') {
      stream.getTracks().forEach((t) => t.stop()); // stopped or switched to a photo meanwhile
      return;
    }
    cameraStream = stream;
    el.camera.srcObject = stream;
    el.camera.hidden = false;
    el.photoPreview.hidden = true;
    el.camera.play().catch(() => {});
    source = 'camera';
    for (const track of stream.getVideoTracks()) {
      track.addEventListener('ended', () => {
        if (cameraStream !== stream) return;
        stopCamera();
        cameraProblem = 'The camera stopped';
        updateState();
      });
    }
    updateState();
    nextCapture = 0;
    scheduleCapture();
  }

  function stopCamera() {
    if (cameraStream) cameraStream.getTracks().forEach((t) => t.stop());
    cameraStream = null;
    el.camera.srcObject = null;
    if (source === 'camera') source = null;
  }

  // ---- photo mode ----
  async function usePhoto(file) {
    if (!file) return;
    if (!consent) {
      pendingPhoto = true;
      showConsent();
      showMessage('Please agree to the try-on above first; your photo will be used then.', 6000);
      el.consentYes.focus();
      return;
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (e) {
      showMessage('That file is not a picture this browser can read.');
      return;
    }
    const scale = Math.min(1, MAX_WIDTH / Math.max(bitmap.width, bitmap.height));
    const width = Math.max(1, Math.round(bitmap.width * scale));
    const height = Math.max(1, Math.round(bitmap.height * scale));
    const canvas = el.photoPreview;
    canvas.width = width;
    canvas.height = height;
    canvas.getContext('2d').drawImage(bitmap, 0, 0, width, height);
    bitmap.close();
    const blob = await canvasToBlob(canvas, JPEG_QUALITY);
    if (!blob) {
      showMessage('That picture could not be prepared.');
      return;
    }
    photoFrame = { blob, bytes: new Uint8Array(await blob.arrayBuffer()) };
    stopCamera();
    cameraProblem = null;
    source = 'photo';
    el.camera.hidden = true;
    el.photoPreview.hidden = false;
    el.photoMode.closest('.panel').classList.remove('highlight');
    clearRendered();
    updateState();
    nextCapture = 0;
    scheduleCapture();
  }

  function leavePhoto() {
    photoFrame = null;
    if (source === 'photo') source = null;
    el.photoPreview.hidden = true;
    el.camera.hidden = false;
    el.photoInput.value = '';
  }

  // ---- consent ----
  function showConsent() {
    el.consentPanel.hidden = false;
  }

  function giveConsent() {
    consent = true;
    el.consentPanel.hidden = true;
    attempt = 0;
    updateState();
    const file = el.photoInput.files && el.photoInput.files[0];
    if (pendingPhoto && file) {
      pendingPhoto = false;
      usePhoto(file);
    } else {
      startCamera();
    }
    connect();
  }

  function withdrawConsent(text) {
    consent = false;
    pendingPhoto = false;
    connectGeneration += 1;
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    reconnecting = false;
    clearTimeout(captureTimer);
    captureTimer = null;
    closeSocket();
    session = null;
    vto.sessionId = null;
    stopCamera();
    leavePhoto();
    source = null;
    cameraProblem = null;
    busyUntil = 0;
    clearRendered();
    showConsent();
    updateState();
    if (text) showMessage(text, 6000);
  }

  // ---- wiring ----
  function init() {
    el.consentYes.addEventListener('click', giveConsent);
    el.consentNo.addEventListener('click', () => {
      showMessage('The camera stays off. You can still browse the catalogue, or agree later.', 6000);
    });
    el.stop.addEventListener('click', () => withdrawConsent('The try-on stopped; your session was ended.'));
    el.catalogue.addEventListener('click', (event) => {
      const button = event.target.closest('button.item');
      if (button) selectItem(button.dataset.itemId, true);
    });
    el.addToCart.addEventListener('click', () => sendCommerce('add_to_cart'));
    el.buy.addEventListener('click', () => sendCommerce('purchase'));
    el.photoMode.addEventListener('click', () => {
      const file = el.photoInput.files && el.photoInput.files[0];
      if (file) usePhoto(file);
      else el.photoInput.click();
    });
    el.photoShortcut.addEventListener('click', () => el.photoInput.click());
    el.photoInput.addEventListener('change', () => {
      const file = el.photoInput.files && el.photoInput.files[0];
      if (file) usePhoto(file);
    });
    el.cameraMode.addEventListener('click', () => {
      leavePhoto();
      clearRendered();
      startCamera();
    });
    const onFitChange = () => {
      if (started) sendJson({ action: 'start', item_id: vto.selectedItem || undefined, ...fitOptions() });
    };
    el.height.addEventListener('change', onFitChange);
    el.fit.addEventListener('change', onFitChange);
    window.addEventListener('pagehide', () => {
      connectGeneration += 1;
      clearTimeout(reconnectTimer);
      consent = false; // leaving: no reconnects; the session ends
      closeSocket();
      stopCamera();
    });
    window.addEventListener('pageshow', (event) => {
      if (event.persisted) location.reload(); // back from the page cache: start clean
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && consent) {
        nextCapture = 0;
        scheduleCapture();
      }
    });
    setInterval(() => {
      updateFps();
      updateState();
    }, 500);

    catalogueReady = loadCatalogue();
    if (params.get('consent') === '1') giveConsent();
    else {
      showConsent();
      updateState();
    }
  }

  init();
})();
