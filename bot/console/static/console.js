// Agent console: live queue and transcript over one WebSocket. Customer text is only ever
// inserted with textContent (never as HTML); the queue is re-rendered by the server.
(function () {
  "use strict";
  var body = document.body;
  var page = body.dataset.page;
  if (!page) { return; }
  var live = document.getElementById("live");
  var roles = body.dataset.lang === "en"
    ? { customer: "Customer", agent: "Agent", bot: "Bot", system: "System", note: "Note" }
    : { customer: "Khách", agent: "Nhân viên", bot: "Bot", system: "Hệ thống", note: "Ghi chú" };

  function refreshQueue() {
    var filter = body.dataset.filter || "waiting";
    fetch("/console/?fragment=1&filter=" + encodeURIComponent(filter), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { document.getElementById("queue-rows").innerHTML = html; } });
  }

  function appendLine(event) {
    var list = document.getElementById(event.role === "note" ? "notes-list" : "transcript");
    if (!list) { return; }
    var item = document.createElement("li");
    item.className = "line " + event.role;
    var meta = document.createElement("span");
    meta.className = "meta";
    var label = roles[event.role] || event.role;
    if (event.author) { label += " · " + event.author; }
    if (event.intent) { label += " · " + event.intent + " " + Number(event.confidence || 0).toFixed(2); }
    meta.textContent = label;
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = event.text;
    item.appendChild(meta);
    item.appendChild(text);
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/console/ws");
    var keepAlive = null;
    socket.onopen = function () {
      if (live) { live.textContent = "live"; live.className = "live on"; }
      keepAlive = setInterval(function () { socket.send("ping"); }, 30000);
    };
    socket.onmessage = function (message) {
      var event = JSON.parse(message.data);
      if (page === "queue") { refreshQueue(); return; }
      if (event.type === "message" && String(event.handoff_id) === body.dataset.handoff) { appendLine(event); }
    };
    socket.onclose = function () {
      if (live) { live.textContent = ""; live.className = "live"; }
      clearInterval(keepAlive);
      setTimeout(connect, 2000);
    };
  }

  connect();
  if (page === "queue") { setInterval(refreshQueue, 30000); }
  var transcript = document.getElementById("transcript");
  if (transcript) { transcript.scrollTop = transcript.scrollHeight; }
})();

// NLU models page: follow a retraining job (stage and progress bar, polled every second); when
// it ends, reload the page, which then lists the new version and links to it (or shows the error).
(function () {
  "use strict";
  var box = document.getElementById("job");
  if (!box || box.dataset.done === "1") { return; }
  var stage = box.querySelector(".job-stage");
  var bar = box.querySelector(".job-progress");
  function poll() {
    fetch("/console/nlu/jobs/" + encodeURIComponent(box.dataset.job), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (job) {
        if (!job) { return; }
        stage.textContent = job.stage;
        bar.value = job.progress;
        if (job.done) { location.replace("/console/nlu/models?job=" + encodeURIComponent(job.id)); } else { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 1000);
})();
