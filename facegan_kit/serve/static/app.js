// facegan serve: the page's logic (no framework, no inline script: the CSP forbids it).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { info: null, token: null, sourceToken: null, editBusy: false, editPending: false,
                  seq: 0, urls: {}, lastFile: null };

  function setStatus(text, isError) {
    const el = $("status");
    el.textContent = text || "";
    el.classList.toggle("error", !!isError);
  }

  async function errorText(resp) {
    try {
      const j = await resp.json();
      if (j && j.error) return j.error;
    } catch (e) { /* not JSON */ }
    return resp.status + " " + resp.statusText;
  }

  async function api(url, opts) {
    const resp = await fetch(url, Object.assign({ cache: "no-store" }, opts || {}));
    if (!resp.ok) throw new Error(await errorText(resp));
    return resp;
  }

  // show a PNG blob in an <img>, releasing the previous object URL of that image
  function showBlob(imgId, blob) {
    const url = URL.createObjectURL(blob);
    const old = state.urls[imgId];
    state.urls[imgId] = url;
    const img = $(imgId);
    img.onload = () => { if (old) URL.revokeObjectURL(old); };
    img.src = url;
    return url;
  }

  function saveBlob(blob, name) {
    const a = document.createElement("a");
    const url = URL.createObjectURL(blob);
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
  }

  function filenameOf(resp, fallback) {
    const cd = resp.headers.get("Content-Disposition") || "";
    const m = /filename="([^"]+)"/.exec(cd);
    return m ? m[1] : fallback;
  }

  function option(select, value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
  }

  // -- setup ------------------------------------------------------------------------------------
  async function init() {
    try {
      state.info = await (await api("/api/info")).json();
    } catch (e) {
      setStatus("cannot reach the server: " + e.message, true);
      return;
    }
    const info = state.info;
    $("model-info").textContent = "model: " + info.image_size + "x" + info.image_size + " faces, " +
      info.levels + " intensity levels" + (info.face_detection ? "" : " (no face detector installed: upload pre-aligned crops)");
    if (!info.face_detection) $("prealigned").checked = true;
    for (const e of info.expressions.concat([info.neutral])) option($("expression"), e, e);
    $("expression").value = info.expressions.includes("happy") ? "happy" : info.expressions[0];
    for (const e of info.expressions) option($("source-label"), e, e);
    for (let i = 0; i < info.samples; i++) {
      option($("sample"), String(i), "synthetic #" + i);
      option($("source-sample"), String(i), "synthetic #" + i);
    }
    $("source-sample").value = String(Math.min(1, info.samples - 1));
    if (!info.transfer) $("transfer-panel").classList.add("unsupported");

    // the value is cleared after each read, so choosing the same file again (say, after
    // ticking "pre-aligned crop") fires a change event and runs again
    $("file").addEventListener("change", () => {
      const f = $("file").files[0];
      $("file").value = "";
      if (f) uploadMain(f);
    });
    // toggling "pre-aligned crop" changes what the current photo means: run it again
    $("prealigned").addEventListener("change", () => { if (state.lastFile) uploadMain(state.lastFile); });
    $("use-sample").addEventListener("click", () => useSample());
    $("expression").addEventListener("change", requestEdit);
    $("intensity").addEventListener("input", requestEdit);
    $("download").addEventListener("click", download);
    $("show-grid").addEventListener("click", showGrid);
    $("source-file").addEventListener("change", () => {
      const f = $("source-file").files[0];
      $("source-file").value = "";
      if (f) uploadSource(f);
    });
    $("use-source-sample").addEventListener("click", useSourceSample);
    $("source-label").addEventListener("change", () => { if (state.sourceToken && state.token) transfer(); });
    $("transfer").addEventListener("click", transfer);
    $("transfer-download").addEventListener("click", transferDownload);
    document.body.dataset.ready = "1";
  }

  // -- faces ------------------------------------------------------------------------------------
  // once per page: a model trained on synthetic faces is about to edit a person's own image
  function warnPhoto() {
    const text = state.info.photo_warning;
    if (!text || !$("photo-warning").hidden) return;
    $("photo-warning").textContent = "Note: " + text + ".";
    $("photo-warning").hidden = false;
  }

  async function uploadFile(file) {
    warnPhoto();
    if (file.size > state.info.max_upload_bytes) {
      throw new Error("file too large (" + file.size + " bytes; the limit is " + state.info.max_upload_bytes + ")");
    }
    const aligned = $("prealigned").checked ? "1" : "0";
    const resp = await api("/api/upload?aligned=" + aligned, {
      method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    return resp.json();
  }

  async function sampleSession(subject, expression) {
    const resp = await api("/api/sample", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ subject: Number(subject), expression: expression || "neutral", intensity: 1.0 }),
    });
    return resp.json();
  }

  async function setFace(session, label) {
    state.token = session.token;
    $("edit-panel").hidden = false;
    $("grid-panel").hidden = false;
    $("transfer-panel").hidden = false;
    $("grid-wrap").hidden = true;
    $("transfer").disabled = !state.sourceToken;
    const o = await api("/api/original?token=" + encodeURIComponent(session.token));
    showBlob("original", await o.blob());
    const size = state.info.image_size;
    $("original-caption").textContent = "input (aligned; model faces are " + size + "x" + size +
      " px, shown at 256)";
    setStatus(label + " (" + session.width + "x" + session.height +
      (session.aligned ? ", pre-aligned crop)" : ", face found and aligned)"));
    document.body.dataset.token = session.token;
    requestEdit();
  }

  async function uploadMain(file) {
    state.lastFile = file;
    setStatus("uploading and encoding…");
    try {
      await setFace(await uploadFile(file), "photo " + file.name);
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  async function useSample() {
    state.lastFile = null;
    setStatus("encoding…");
    try {
      await setFace(await sampleSession($("sample").value, "neutral"), "synthetic face #" + $("sample").value);
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  // -- editing: at most one request in flight; the latest slider value wins ---------------------
  function editParams() {
    const t = Number($("intensity").value);
    $("intensity-value").textContent = t.toFixed(2);
    return "token=" + encodeURIComponent(state.token) + "&expression=" + encodeURIComponent($("expression").value) +
      "&intensity=" + t.toFixed(3);
  }

  async function requestEdit() {
    if (!state.token) return;
    if (state.editBusy) { state.editPending = true; editParams(); return; }
    state.editBusy = true;
    const params = editParams();
    const t0 = performance.now();
    try {
      const resp = await api("/api/edit?" + params);
      const blob = await resp.blob();
      showBlob("result", blob);
      const img = $("result");
      img.dataset.seq = String(++state.seq);
      img.dataset.params = params;
      $("result-caption").textContent = $("expression").value + " @ " + Number($("intensity").value).toFixed(2) +
        " (" + state.info.image_size + " px, shown at 256)";
      $("latency").textContent = "last edit: " + Math.round(performance.now() - t0) + " ms round trip";
    } catch (e) {
      setStatus(e.message, true);
    } finally {
      state.editBusy = false;
      if (state.editPending) { state.editPending = false; requestEdit(); }
    }
  }

  async function download() {
    if (!state.token) return;
    try {
      const resp = await api("/api/download?" + editParams());
      saveBlob(await resp.blob(), filenameOf(resp, "facegan-edit.png"));
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  async function showGrid() {
    if (!state.token) return;
    try {
      const resp = await api("/api/grid?token=" + encodeURIComponent(state.token));
      showBlob("grid", await resp.blob());
      $("grid-wrap").hidden = false;
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  // -- transfer ---------------------------------------------------------------------------------
  async function setSource(session) {
    state.sourceToken = session.token;
    const o = await api("/api/original?token=" + encodeURIComponent(session.token));
    showBlob("source", await o.blob());
    $("transfer").disabled = !state.token;
    if (state.token) await transfer();
  }

  async function uploadSource(file) {
    try {
      await setSource(await uploadFile(file));
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  async function useSourceSample() {
    try {
      await setSource(await sampleSession($("source-sample").value, $("source-label").value));
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  function transferParams() {
    return "target=" + encodeURIComponent(state.token) + "&source=" + encodeURIComponent(state.sourceToken) +
      "&label=" + encodeURIComponent($("source-label").value);
  }

  async function transfer() {
    if (!state.token || !state.sourceToken) return;
    try {
      const resp = await api("/api/transfer?" + transferParams(), { method: "POST" });
      showBlob("transfer-result", await resp.blob());
      $("transfer-download").disabled = false;
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  async function transferDownload() {
    try {
      const resp = await api("/api/download?token=" + encodeURIComponent(state.token) + "&source=" +
        encodeURIComponent(state.sourceToken) + "&label=" + encodeURIComponent($("source-label").value));
      saveBlob(await resp.blob(), filenameOf(resp, "facegan-transfer.png"));
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  document.addEventListener("DOMContentLoaded", init);
})();
