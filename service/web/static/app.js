// scgan-colorize page: upload an image to POST /colorize (and /saliency), show the result; colour hints.
// Vanilla JS, same origin only (see the Content-Security-Policy in service/web/router.py).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const fileInput = $("file"), dropzone = $("dropzone"), statusEl = $("status"), errorEl = $("error");
  const result = $("result"), stage = $("stage"), split = $("split");
  const beforeImg = $("before-img"), afterImg = $("after-img"), saliencyImg = $("saliency-img");
  const saliencyBox = $("saliency"), saliencyNote = $("saliency-note");
  const download = $("download"), dimensions = $("dimensions"), timings = $("timings");
  const vividness = $("vividness"), vividnessValue = $("vividness-value");
  const keyForm = $("key-form"), keyInput = $("api-key"), keyNote = $("key-note");
  const hintLayer = $("hint-layer"), hintList = $("hint-list"), hintColor = $("hint-color");
  const hintsNote = $("hints-note"), hintsTools = $("hints-tools"), hintsClear = $("hints-clear");
  const hintsView = document.querySelector('input[name="view"][value="hints"]');

  // Headers set by service/routes/colorize.py; same origin, so fetch can read them all.
  const TIMING_HEADERS = [
    ["X-Total-Ms", "Total", "ms"], ["X-Preprocess-Ms", "Pre-processing", "ms"], ["X-Queue-Wait-Ms", "Queue wait", "ms"],
    ["X-Inference-Ms", "Inference", "ms"], ["X-Postprocess-Ms", "Post-processing", "ms"],
    ["X-Batch-Size", "Batch size", ""], ["X-Render-Size", "Render size", "px"],
  ];

  let current = null;     // {blob, name}: the image on display
  let generation = 0;     // answers to an older upload are dropped
  let saliencySupported = true;
  const urls = {before: null, after: null, saliency: null};
  // API key (SCGAN_API_KEYS_FILE): asked for on the first 401, then kept in this variable only -- never in
  // storage or cookies, so it is gone with the tab.
  let apiKey = null;
  let retryAfterKey = null;  // the upload a 401 interrupted, run again once a key is given
  let modelChecked = false;  // GET /v1/model answered (it needs the key too)
  // Colour hints (POST /colorize's form field "hints"): points of the photo as displayed, EXIF orientation
  // applied, in its own pixels -- the answer's natural size, which is the upload's.
  let hints = [];           // [{x, y, color: "#rrggbb"}]
  let takesHints = false;   // GET /v1/model: takes_hints
  let drag = null;          // a hint being pressed: {index, startX, startY, moved, from}

  function authHeaders() {
    return apiKey ? {Authorization: `Bearer ${apiKey}`} : {};
  }

  // A 401: the key we sent (if any) was refused; ask for one.
  function askForKey() {
    const message = apiKey ? "That key was not accepted; enter another." : "This service needs an API key.";
    apiKey = null;
    keyNote.textContent = message;
    keyForm.hidden = false;
    keyInput.focus();
  }

  function setUrl(kind, img, blob) {
    if (urls[kind]) URL.revokeObjectURL(urls[kind]);
    urls[kind] = blob ? URL.createObjectURL(blob) : null;
    if (img) { if (urls[kind]) img.src = urls[kind]; else img.removeAttribute("src"); }
    return urls[kind];
  }

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = !message;
  }

  // {"error": {"code", "message", "request_id"}} -> one readable line.
  async function describeError(response) {
    let code = "", message = "", requestId = response.headers.get("X-Request-ID") || "";
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || ""; message = body.error.message || ""; requestId = body.error.request_id || requestId;
      }
    } catch (_) { /* not JSON: a proxy's page, say */ }
    const what = {
      400: "The image could not be read", 401: "The API key is missing or was not accepted", 408: "The upload took too long", 413: "The image is too large",
      415: "That is not an image the service can read", 422: "Invalid options", 501: "Not available for this model",
      503: "The service is busy or not ready; try again in a moment", 504: "The service took too long",
    }[response.status] || "The service answered with an error";
    let text = `${what} (HTTP ${response.status}${code ? ", " + code : ""})`;
    if (message) text += `: ${message}`;
    if (requestId) text += ` [request id ${requestId}]`;
    return text;
  }

  async function post(path, blob, name) {
    const form = new FormData();
    form.append("file", blob, name);
    if (path === "/colorize") {
      form.append("chroma_gain", vividness.value);
      if (hints.length) form.append("hints", JSON.stringify(hints));
    }
    return fetch(path, {method: "POST", body: form, headers: authHeaders()});
  }

  function extensionOf(mediaType) {
    return {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}[mediaType] || "png";
  }

  function stemOf(name) {
    const base = (name || "image").replace(/^.*[\\/]/, "");
    return base.replace(/\.[^.]*$/, "") || "image";
  }

  function showTimings(headers) {
    timings.replaceChildren();
    for (const [header, label, unit] of TIMING_HEADERS) {
      const value = headers.get(header);
      if (value === null) continue;
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = label;
      dd.textContent = unit ? `${value} ${unit}` : value;
      dd.dataset.header = header;
      timings.append(dt, dd);
    }
  }

  async function colorize(blob, name) {
    const mine = ++generation;
    current = {blob, name};
    showError("");
    statusEl.textContent = `Colorizing ${name}…`;
    result.setAttribute("aria-busy", "true");
    setUrl("saliency", saliencyImg, null);
    saliencyImg.hidden = true;
    let response;
    try {
      response = await post("/colorize", blob, name);
    } catch (err) {
      if (mine !== generation) return;
      statusEl.textContent = "";
      showError(`Could not reach the service: ${err.message}`);
      result.removeAttribute("aria-busy");
      return;
    }
    if (mine !== generation) return;
    if (!response.ok) {
      const message = await describeError(response);
      if (mine !== generation) return;
      statusEl.textContent = "";
      showError(message);
      result.removeAttribute("aria-busy");
      if (response.status === 401) {
        retryAfterKey = {blob, name};
        askForKey();
      }
      return;
    }
    const colour = await response.blob();
    if (mine !== generation) return;
    setUrl("before", beforeImg, blob);
    const href = setUrl("after", afterImg, colour);
    await Promise.all([afterImg.decode().catch(() => {}), beforeImg.decode().catch(() => {})]);
    if (mine !== generation) return;
    download.href = href;
    download.download = `${stemOf(name)}-colorized.${extensionOf(colour.type)}`;
    showTimings(response.headers);
    afterImg.alt = `${name}, colorized`;
    beforeImg.alt = `${name}, original`;
    result.hidden = false;  // before measuring: hidden images have no layout width
    dimensions.textContent = `${afterImg.naturalWidth} × ${afterImg.naturalHeight} px` +
      (afterImg.naturalWidth > afterImg.clientWidth ? " (preview scaled; the download is full size)" : "");
    if (!drag) renderHints();  // the photo's size is known now
    result.removeAttribute("aria-busy");
    const hinted = hints.length ? ` with ${hints.length} colour hint${hints.length > 1 ? "s" : ""}` : "";
    statusEl.textContent = `Done: ${name} colorized${hinted} in ${response.headers.get("X-Total-Ms") || "?"} ms.`;
    if (!modelChecked) checkModel();
    if (saliencyBox.checked) await showSaliency();
  }

  function disableSaliency(reason) {
    saliencySupported = false;
    saliencyBox.checked = false;
    saliencyBox.disabled = true;
    saliencyImg.hidden = true;
    saliencyNote.textContent = reason;
  }

  async function showSaliency() {
    if (!current || !saliencySupported) return;
    if (urls.saliency) { saliencyImg.hidden = false; return; }
    const mine = generation;
    statusEl.textContent = "Computing the saliency map…";
    let response;
    try {
      response = await post("/saliency", current.blob, current.name);
    } catch (err) {
      showError(`Could not reach the service: ${err.message}`);
      return;
    }
    if (mine !== generation) return;
    if (response.status === 501 || response.status === 409) {
      disableSaliency("This model has no saliency branch, so there is no map to show.");
      statusEl.textContent = "";
      return;
    }
    if (!response.ok) {
      showError(await describeError(response));
      statusEl.textContent = "";
      if (response.status === 401) askForKey();
      return;
    }
    const map = await response.blob();
    if (mine !== generation) return;
    setUrl("saliency", saliencyImg, map);
    await saliencyImg.decode().catch(() => {});
    saliencyImg.hidden = !saliencyBox.checked;
    statusEl.textContent = "Saliency map shown.";
  }

  // A new photo starts without hints.
  function newPhoto(blob, name) {
    hints = [];
    renderHints();
    colorize(blob, name);
  }

  function take(file) {
    if (file) newPhoto(file, file.name || "pasted-image.png");
  }

  // Choose, drop, paste.
  fileInput.addEventListener("change", () => { take(fileInput.files[0]); fileInput.value = ""; });
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (e) => e.preventDefault());
  dropzone.addEventListener("dragenter", () => dropzone.classList.add("dragging"));
  dropzone.addEventListener("dragover", (e) => { e.dataTransfer.dropEffect = "copy"; dropzone.classList.add("dragging"); });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("dragging"));
  dropzone.addEventListener("drop", (e) => {
    dropzone.classList.remove("dragging");
    take(e.dataTransfer && e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const items = e.clipboardData ? Array.from(e.clipboardData.items) : [];
    const item = items.find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (item) { e.preventDefault(); take(item.getAsFile()); }
  });

  // Examples: fetched from this server, then uploaded like any other file.
  for (const button of document.querySelectorAll(".example")) {
    button.addEventListener("click", async () => {
      const src = button.dataset.src;
      try {
        const response = await fetch(src);
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        newPhoto(await response.blob(), src.split("/").pop());
      } catch (err) {
        showError(`Could not load the example: ${err.message}`);
      }
    });
  }

  // Before/after: the range input is the keyboard control; pointer drags on the picture move it too.
  function setSplit(percent) {
    const value = Math.min(100, Math.max(0, percent));
    split.value = String(Math.round(value));
    stage.style.setProperty("--split", `${value}%`);
    split.setAttribute("aria-valuetext", `${Math.round(value)}% original, ${100 - Math.round(value)}% colorized`);
  }
  split.addEventListener("input", () => setSplit(Number(split.value)));
  let dragging = false;
  const fromPointer = (e) => {
    const box = stage.getBoundingClientRect();
    setSplit(((e.clientX - box.left) / box.width) * 100);
  };
  stage.addEventListener("pointerdown", (e) => {
    if (!stage.classList.contains("slider")) return;
    dragging = true; stage.setPointerCapture(e.pointerId); fromPointer(e);
  });
  stage.addEventListener("pointermove", (e) => { if (dragging) fromPointer(e); });
  stage.addEventListener("pointerup", () => { dragging = false; });
  stage.addEventListener("pointercancel", () => { dragging = false; });
  setSplit(50);

  const VIEWS = ["slider", "side", "hints"];
  function setView(view) {
    for (const name of VIEWS) stage.classList.toggle(name, name === view);
  }
  for (const radio of document.querySelectorAll('input[name="view"]')) {
    radio.addEventListener("change", () => { if (radio.checked) setView(radio.value); });
  }

  // Colour hints: in the "Colour hints" view a click on the photo drops a hint of the picked colour, a drag
  // moves one, a click on one removes it; the list below offers the same removal to the keyboard. Every
  // change re-colorizes the photo (older answers are dropped, see `generation`).
  function placeDot(dot, hint) {
    dot.style.left = `${((hint.x + 0.5) / afterImg.naturalWidth) * 100}%`;
    dot.style.top = `${((hint.y + 0.5) / afterImg.naturalHeight) * 100}%`;
  }

  function renderHints() {
    hintLayer.replaceChildren();
    hintList.replaceChildren();
    hints.forEach((hint, index) => {
      const label = `${hint.color} at (${hint.x}, ${hint.y})`;
      if (afterImg.naturalWidth) {
        const dot = document.createElement("span");
        dot.className = "hint";
        dot.dataset.index = String(index);
        dot.style.background = hint.color;
        dot.title = `Hint ${index + 1}: ${label}. Drag to move it, click to remove it.`;
        placeDot(dot, hint);
        hintLayer.append(dot);
      }
      const item = document.createElement("li"), swatch = document.createElement("span");
      const text = document.createElement("span"), remove = document.createElement("button");
      swatch.className = "swatch";
      swatch.style.background = hint.color;
      text.textContent = label;
      remove.type = "button";
      remove.className = "button small-button";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove hint ${index + 1}, ${label}`);
      remove.addEventListener("click", () => { hints.splice(index, 1); hintsChanged(); });
      item.append(swatch, text, remove);
      hintList.append(item);
    });
    hintsClear.disabled = !hints.length;
  }

  function hintsChanged() {
    renderHints();
    if (current) colorize(current.blob, current.name);
  }

  function imagePoint(e) {
    const box = hintLayer.getBoundingClientRect();
    const width = afterImg.naturalWidth, height = afterImg.naturalHeight;
    const x = Math.floor(((e.clientX - box.left) / box.width) * width);
    const y = Math.floor(((e.clientY - box.top) / box.height) * height);
    return {x: Math.min(width - 1, Math.max(0, x)), y: Math.min(height - 1, Math.max(0, y))};
  }

  hintLayer.addEventListener("pointerdown", (e) => {
    if (!takesHints || !current || !afterImg.naturalWidth || e.button !== 0) return;
    e.preventDefault();
    const dot = e.target.closest(".hint");
    if (dot) {
      const index = Number(dot.dataset.index);
      drag = {index, startX: e.clientX, startY: e.clientY, moved: false, from: {...hints[index]}};
      hintLayer.setPointerCapture(e.pointerId);
      return;
    }
    hints.push({...imagePoint(e), color: hintColor.value.toLowerCase()});
    hintsChanged();
  });
  hintLayer.addEventListener("pointermove", (e) => {
    if (!drag) return;
    if (!drag.moved && Math.hypot(e.clientX - drag.startX, e.clientY - drag.startY) < 4) return;  // a click
    drag.moved = true;
    Object.assign(hints[drag.index], imagePoint(e));
    placeDot(hintLayer.children[drag.index], hints[drag.index]);
  });
  hintLayer.addEventListener("pointerup", () => {
    if (!drag) return;
    const {index, moved} = drag;
    drag = null;
    if (!moved) hints.splice(index, 1);  // one click removes it
    hintsChanged();
  });
  hintLayer.addEventListener("pointercancel", () => {
    if (!drag) return;
    Object.assign(hints[drag.index], drag.from);  // put it back where it was
    drag = null;
    renderHints();
  });
  hintsClear.addEventListener("click", () => { hints = []; hintsChanged(); });

  function setHintsSupported(supported) {
    takesHints = supported;
    hintsView.disabled = !supported;
    hintsTools.hidden = !supported;
    hintsNote.textContent = supported
      ? "Choose the “Colour hints” view, then click on the photo to drop a hint of the picked colour there. " +
        "Drag a hint to move it; click it to remove it. The photo is colorized again after each change."
      : "This model takes no colour hints.";
    if (!supported && hintsView.checked) {
      document.querySelector('input[name="view"][value="slider"]').checked = true;
      setView("slider");
    }
  }

  // The vividness slider: its value goes with every /colorize; letting go of it re-colorizes the photo.
  const showVividness = () => { vividnessValue.textContent = Number(vividness.value).toFixed(1); };
  vividness.addEventListener("input", showVividness);
  vividness.addEventListener("change", () => { if (current) colorize(current.blob, current.name); });
  showVividness();

  saliencyBox.addEventListener("change", () => {
    if (saliencyBox.checked) showSaliency(); else saliencyImg.hidden = true;
  });

  // Ask once whether the loaded checkpoint has a saliency branch (and whether the service wants a key).
  function checkModel() {
    fetch("/v1/model", {headers: authHeaders()}).then((r) => {
      if (r.status === 401) askForKey();
      if (r.ok) modelChecked = true;
      return r.ok ? r.json() : null;
    }).then((info) => {
      if (info && info.has_saliency === false) {
        disableSaliency("This model has no saliency branch, so there is no map to show.");
      }
      if (info) setHintsSupported(info.takes_hints === true);
    }).catch(() => { /* not ready yet: /saliency will say */ });
  }

  keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = keyInput.value.trim();
    keyInput.value = "";
    if (!key) return;
    apiKey = key;
    keyForm.hidden = true;
    showError("");
    const pending = retryAfterKey;
    retryAfterKey = null;
    if (pending) colorize(pending.blob, pending.name); else checkModel();
  });

  checkModel();
})();
