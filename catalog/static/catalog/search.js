// The search page: text, photo (file picker or drag-and-drop) and "more like this",
// all through the public JSON API. No build step, no framework.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const results = $("results");
  const template = $("result-template");

  function filters() {
    const params = new URLSearchParams();
    params.set("k", "24");
    for (const name of ["category", "min_price", "max_price"]) {
      const value = $(name).value.trim();
      if (value) params.set(name, value);
    }
    if ($("in_stock").checked) params.set("in_stock", "true");
    return params;
  }

  function show(message, isError) {
    $("error").hidden = !isError;
    $("error").textContent = isError ? message : "";
    $("status").textContent = isError ? "" : message;
  }

  function describeError(body, status) {
    if (body && body.fields) {
      return Object.entries(body.fields).map(([f, m]) => `${f}: ${[].concat(m).join(" ")}`).join("; ");
    }
    return (body && body.detail) || `The search failed (HTTP ${status}).`;
  }

  async function run(request, label) {
    show("Searching…", false);
    $("partial").hidden = true;
    let response, body;
    try {
      response = await fetch(request.url, request.init);
      body = await response.json();
    } catch (err) {
      show("The search service could not be reached.", true);
      return;
    }
    if (!response.ok) {
      results.replaceChildren();
      show(describeError(body, response.status), true);
      return;
    }
    render(body, label);
  }

  function render(body, label) {
    const items = body.results.map((hit) => {
      const node = template.content.firstElementChild.cloneNode(true);
      const product = hit.product;
      node.dataset.productId = product.id;
      node.querySelector(".thumb").src = hit.image || "";
      node.querySelector(".thumb").alt = product.title;
      const title = node.querySelector(".title");
      title.textContent = product.title;
      title.href = `/api/products/${product.id}/`;
      node.querySelector(".price").textContent = `${product.price} ${product.currency}`;
      node.querySelector(".category").textContent = product.category || "uncategorised";
      node.querySelector(".score").textContent = `score ${hit.score.toFixed(3)}`;
      node.querySelector(".similar").addEventListener("click", () => similar(product));
      return node;
    });
    results.replaceChildren(...items);
    $("partial").hidden = !body.partial;
    show(`${body.results.length} results for ${label} in ${body.took_ms.toFixed(0)} ms`, false);
  }

  function csrf() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function searchText(text) {
    const params = filters();
    params.set("q", text);
    run({ url: `/api/search/?${params}`, init: {} }, `“${text}”`);
  }

  function searchPhoto(file) {
    const data = new FormData();
    data.append("image", file);
    for (const [key, value] of filters()) data.append(key, value);
    const preview = $("preview");
    preview.querySelector("img").src = URL.createObjectURL(file);
    preview.querySelector("span").textContent = file.name;
    preview.hidden = false;
    run(
      { url: "/api/search/", init: { method: "POST", body: data, headers: { "X-CSRFToken": csrf() } } },
      "your photo",
    );
  }

  function similar(product) {
    $("preview").hidden = true;
    run({ url: `/api/products/${product.id}/similar/?${filters()}`, init: {} }, `products like “${product.title}”`);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("q").value.trim();
    if (text) {
      $("preview").hidden = true;
      searchText(text);
    } else {
      show("Type something to search for, or use a photo.", true);
    }
  });
  $("photo").addEventListener("change", () => {
    if ($("photo").files.length) searchPhoto($("photo").files[0]);
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) searchPhoto(file);
  });
})();
