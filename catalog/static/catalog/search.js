// The search page: text, photo (file picker or drag-and-drop) and "more like this",
// all through the public JSON API. No build step, no framework.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const results = $("results");
  const template = $("result-template");
  const FILTERS = ["category", "min_price", "max_price"];

  // What a shopper reads when the API refuses a search: never its field names or codes.
  const PHOTO_PROBLEMS = {
    too_large: "That photo is too large. Please use a smaller one.",
    too_many_pixels: "That photo has too many pixels. Please use a smaller one.",
    side_too_long: "That photo is too large. Please use a smaller one.",
    resized_too_large: "That photo is too large. Please use a smaller one.",
    aspect_too_extreme: "That photo is too long and thin. Please crop it or try another.",
    timeout: "That picture took too long to fetch. Please try another.",
  };
  const FIELD_PROBLEMS = {
    max_price: "The maximum price must be a number, and no lower than the minimum price.",
    min_price: "The minimum price must be a number of 0 or more.",
    category: "That category is not available any more. Please pick another one.",
    q: "Please type a shorter search (at most 500 characters).",
    image: "That file could not be read as a photo. Please try a JPEG or PNG picture.",
    image_url: "That picture could not be used. Please try another.",
    in_stock: "Please check the 'In stock only' box again.",
  };

  function filters() {
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      const value = $(name).value.trim();
      if (value) params.set(name, value);
    }
    if ($("in_stock").checked) params.set("in_stock", "true");
    return params;
  }

  function withK(params) {
    const out = new URLSearchParams(params);
    out.set("k", "24");
    return out;
  }

  function filterProblem() {
    const low = $("min_price").value.trim();
    const high = $("max_price").value.trim();
    if ((low && !(Number(low) >= 0)) || (high && !(Number(high) >= 0))) {
      return "Prices must be numbers of 0 or more.";
    }
    if (low && high && Number(low) > Number(high)) {
      return "The maximum price must be at least the minimum price.";
    }
    return "";
  }

  function show(message, isError) {
    $("error").hidden = !isError;
    $("error").textContent = isError ? message : "";
    $("status").textContent = isError ? "" : message;
  }

  function describeError(body, status) {
    if (status === 429) return "You are searching very quickly. Please wait a few seconds and try again.";
    if (status === 404) return "That product is no longer available.";
    if (status === 503) return "Search is not available right now. Please try again in a moment.";
    if (status >= 500 || !body) return "Something went wrong on our side. Please try again.";
    if (PHOTO_PROBLEMS[body.error]) return PHOTO_PROBLEMS[body.error];
    if (body.error === "not_indexed") return "This product's photo is still being processed. Please try again shortly.";
    if (body.error === "unreadable_image") return FIELD_PROBLEMS.image;
    for (const name of Object.keys(body.fields || {})) {
      if (FIELD_PROBLEMS[name]) return FIELD_PROBLEMS[name];
    }
    return "That search could not be run. Please check the search box and the filters.";
  }

  function clear() {
    results.replaceChildren();
    $("empty").hidden = true;
    $("partial").hidden = true;
  }

  async function run(request, label) {
    show("Searching…", false);
    clear();
    let response, body;
    try {
      response = await fetch(request.url, request.init);
      body = await response.json().catch(() => null);
    } catch (err) {
      show("The search service could not be reached. Please check your connection and try again.", true);
      return;
    }
    if (!response.ok) {
      show(describeError(body, response.status), true);
      return;
    }
    render(body, label);
  }

  function productUrl(product) {
    return `/products/${encodeURIComponent(product.id)}/`;
  }

  function render(body, label) {
    const items = body.results.map((hit) => {
      const node = template.content.firstElementChild.cloneNode(true);
      const product = hit.product;
      node.dataset.productId = product.id;
      node.querySelector(".thumb-link").href = productUrl(product);
      node.querySelector(".thumb").src = hit.image || "";
      node.querySelector(".thumb").alt = product.title;
      const title = node.querySelector(".title");
      title.textContent = product.title;
      title.href = productUrl(product);
      node.querySelector(".price").textContent = `${product.price} ${product.currency}`;
      node.querySelector(".category").textContent = categoryName(product.category);
      node.querySelector(".similar").addEventListener("click", () => similar(product.id, product.title));
      return node;
    });
    results.replaceChildren(...items);
    $("partial").hidden = !body.partial;
    if (!items.length) {
      $("empty").querySelector(".what").textContent = label;
      $("empty").hidden = false;
      show("", false);
      return;
    }
    const count = items.length === 1 ? "1 result" : `${items.length} results`;
    show(`${count} for ${label}`, false);
  }

  function categoryName(slug) {
    if (!slug) return "Uncategorised";
    const option = $("category").querySelector(`option[value="${CSS.escape(slug)}"]`);
    return option ? option.textContent : slug;
  }

  function csrf() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // The address keeps the search, so "back" from a product page shows the same results.
  function remember(params) {
    const query = params.toString();
    history.replaceState(null, "", query ? `?${query}` : location.pathname);
  }

  function searchText(text) {
    const params = filters();
    params.set("q", text);
    remember(params);
    run({ url: `/api/search/?${withK(params)}`, init: {} }, `“${text}”`);
  }

  function searchPhoto(file) {
    const data = new FormData();
    data.append("image", file);
    for (const [key, value] of withK(filters())) data.append(key, value);
    const preview = $("preview");
    preview.querySelector("img").src = URL.createObjectURL(file);
    preview.querySelector("span").textContent = file.name;
    preview.hidden = false;
    remember(filters());
    run(
      { url: "/api/search/", init: { method: "POST", body: data, headers: { "X-CSRFToken": csrf() } } },
      "your photo",
    );
  }

  function similar(id, title) {
    $("preview").hidden = true;
    const params = filters();
    params.set("similar", id);
    remember(params);
    params.delete("similar");
    const label = title ? `products like “${title}”` : "products like the one you viewed";
    run({ url: `/api/products/${encodeURIComponent(id)}/similar/?${withK(params)}`, init: {} }, label);
  }

  function checked(action) {
    const problem = filterProblem();
    if (problem) {
      clear();
      show(problem, true);
      return;
    }
    action();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("q").value.trim();
    if (text) {
      $("preview").hidden = true;
      checked(() => searchText(text));
    } else {
      clear();
      show("Type something to search for, or use a photo.", true);
    }
  });
  $("photo").addEventListener("change", () => {
    if ($("photo").files.length) checked(() => searchPhoto($("photo").files[0]));
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) checked(() => searchPhoto(file));
  });

  // A search in the address (a link, a reload, "back" from a product page) runs at once.
  const start = new URLSearchParams(location.search);
  for (const name of FILTERS) {
    if (start.has(name)) $(name).value = start.get(name);
  }
  $("in_stock").checked = start.get("in_stock") === "true";
  if (start.get("q")) {
    $("q").value = start.get("q");
    checked(() => searchText(start.get("q").trim()));
  } else if (/^\d+$/.test(start.get("similar") || "")) {
    checked(() => similar(start.get("similar"), ""));
  }
})();
