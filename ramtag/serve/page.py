"""``GET /``: one page to try the server in a browser. No build step, no external assets: the
HTML, its style and its script are this string. A person drops or picks images; each is sent to
``/v1/tag`` and its tags are shown with a bar per score, in English and, when the server has them,
Chinese. A server started with a token asks for it once (kept in the tab's session storage)."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ramtag</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  #drop { border: 2px dashed #8a8a8a; border-radius: 10px; padding: 2rem; text-align: center; cursor: pointer; }
  #drop.over { background: #eef5ff; border-color: #3b7ddd; }
  .result { display: flex; gap: 1rem; margin: 1.2rem 0; align-items: flex-start; }
  .result img { width: 160px; height: auto; border-radius: 6px; object-fit: cover; }
  .tags { flex: 1; }
  .tag { display: grid; grid-template-columns: 11rem 1fr 3.5rem; gap: .5rem; align-items: center; margin: 2px 0; }
  .bar { background: #e6e6e6; border-radius: 3px; height: .7rem; }
  .bar span { display: block; height: 100%; background: #3b7ddd; border-radius: 3px; }
  .zh { color: #666; margin-left: .35rem; }
  .error { color: #b00020; }
  #info, .muted { color: #666; font-size: .9rem; }
  #token { display: none; margin: 1rem 0; }
</style>
</head>
<body>
<h1>ramtag</h1>
<div id="info">RAM++ image tagging</div>
<div id="token">This server asks for its token: <input id="token-value" type="password" autocomplete="off">
  <button id="token-save" type="button">Use it</button></div>
<p id="drop" tabindex="0">Drop images here, or click to pick them
  <input id="pick" type="file" accept="image/*" multiple hidden></p>
<div id="results"></div>
<script>
"use strict";
const drop = document.getElementById("drop"), pick = document.getElementById("pick");
const results = document.getElementById("results");
let chinese = false;

function headers() {
  const token = sessionStorage.getItem("ramtag-token");
  return token ? {"Authorization": "Bearer " + token} : {};
}

async function loadInfo() {
  const response = await fetch("v1/info", {headers: headers()});
  if (response.status === 401) { document.getElementById("token").style.display = "block"; return; }
  if (!response.ok) return;
  const info = await response.json();
  chinese = info.chinese_names;
  document.getElementById("info").textContent =
    `${info.model_kind}, ${info.vocabulary_size} tags, ${info.precision} on ${info.device}`;
}

function show(file, answer) {
  const row = document.createElement("div");
  row.className = "result";
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  img.alt = file.name;
  const tags = document.createElement("div");
  tags.className = "tags";
  const title = document.createElement("div");
  title.className = "muted";
  title.textContent = answer.error ? file.name : `${file.name} (${answer.width}x${answer.height})`;
  tags.appendChild(title);
  if (answer.error) {
    const error = document.createElement("div");
    error.className = "error";
    error.textContent = answer.error;
    tags.appendChild(error);
  }
  answer.tags.forEach((name, index) => {
    const score = answer.scores[index];
    const line = document.createElement("div");
    line.className = "tag";
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    if (answer.tags_zh) {
      const zh = document.createElement("span");
      zh.className = "zh";
      zh.textContent = answer.tags_zh[index];
      label.appendChild(zh);
    }
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = (100 * score).toFixed(1) + "%";
    bar.appendChild(fill);
    const value = document.createElement("span");
    value.className = "score";
    value.textContent = score.toFixed(3);
    line.append(label, bar, value);
    tags.appendChild(line);
  });
  if (!answer.error && answer.tags.length === 0) {
    const none = document.createElement("div");
    none.className = "muted";
    none.textContent = "no tag over its threshold";
    tags.appendChild(none);
  }
  row.append(img, tags);
  results.prepend(row);
}

async function send(files) {
  for (const file of files) {
    const form = new FormData();
    form.append("files", file, file.name);
    form.append("lang", chinese ? "both" : "en");
    const response = await fetch("v1/tag", {method: "POST", body: form, headers: headers()});
    if (response.status === 401) { document.getElementById("token").style.display = "block"; return; }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) { show(file, {tags: [], scores: [], error: body.error || response.statusText}); continue; }
    show(file, body.results[0]);
  }
}

drop.addEventListener("click", () => pick.click());
drop.addEventListener("keydown", (event) => { if (event.key === "Enter") pick.click(); });
pick.addEventListener("change", () => { send(pick.files); pick.value = ""; });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  send(event.dataTransfer.files);
});
document.getElementById("token-save").addEventListener("click", () => {
  sessionStorage.setItem("ramtag-token", document.getElementById("token-value").value);
  document.getElementById("token").style.display = "none";
  loadInfo();
});
loadInfo();
</script>
</body>
</html>
"""
