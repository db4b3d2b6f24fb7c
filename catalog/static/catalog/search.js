// The search page: text, photo (file picker or drag-and-drop) and "more like this",
// all through the public JSON API. No build step, no framework.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const results = $("results");
  const template = $("result-template");
  const FILTERS = ["category", "min_price", "max_price", "brand"];
  const PAGE_SIZE = 24;
  const FACET_GROUPS = [
    ["category", "Category"],
    ["brand", "Brand"],
    ["price", "Price"],
    ["in_stock", "Availability"],
  ];

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
    page: "That page is past the end of the results. Please start again from the first page.",
    brand: "That brand name is too long. Please pick a brand from the list.",
    sort: "Please pick a sort order from the list.",
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
    out.set("k", String(PAGE_SIZE));
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
    $("facets").hidden = true;
    $("pager").hidden = true;
  }

  // The brand filter has no control of its own: it is chosen from the facets.
  function showBrand() {
    const brand = $("brand").value;
    $("chosen").hidden = !brand;
    $("chosen").querySelector(".what").textContent = brand;
  }

  async function run(request, label, text) {
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
    render(body, label, text);
  }

  function productUrl(product) {
    return `/products/${encodeURIComponent(product.id)}/`;
  }

  function render(body, label, text) {
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
    const found = body.matched === undefined ? items.length : body.matched;
    const more = body.depth !== undefined && found >= body.depth ? "+" : "";
    const count = found === 1 ? "1 result" : `${found}${more} results`;
    show(`${count} for ${label}`, false);
    if (body.facets) renderFacets(body.facets, text);
    if (body.pages > 1) renderPager(body.page, body.pages, text);
  }

  function renderPager(page, pages, text) {
    $("page-of").textContent = `Page ${page} of ${pages}`;
    $("prev").disabled = page <= 1;
    $("next").disabled = page >= pages;
    $("prev").onclick = () => checked(() => searchText(text, page - 1));
    $("next").onclick = () => checked(() => searchText(text, page + 1));
    $("pager").hidden = false;
  }

  // Each facet value narrows the search to it (and back to page 1); the chosen one is
  // marked, and choosing it again drops it.
  const FACET_CHOICE = {
    category: {
      chosen: (f) => $("category").value === f.value,
      choose: (f, on) => { $("category").value = on ? f.value : ""; },
    },
    brand: {
      chosen: (f) => $("brand").value.toLowerCase() === String(f.value).toLowerCase(),
      choose: (f, on) => { $("brand").value = on ? f.value : ""; },
    },
    price: {
      chosen: (f) => $("min_price").value === String(f.min) && $("max_price").value === (f.max === null ? "" : String(f.max)),
      choose: (f, on) => {
        $("min_price").value = on ? String(f.min) : "";
        $("max_price").value = on && f.max !== null ? String(f.max) : "";
      },
    },
    in_stock: {
      chosen: (f) => f.value === true && $("in_stock").checked,
      choose: (f, on) => { $("in_stock").checked = on; },
      offered: (f) => f.value === true, // the page filters on "in stock" only
    },
  };

  function renderFacets(facets, text) {
    const groups = [];
    for (const [name, title] of FACET_GROUPS) {
      const values = facets[name] || [];
      if (!values.length) continue;
      const group = document.createElement("div");
      group.className = "facet-group";
      group.dataset.facet = name;
      const heading = document.createElement("h3");
      heading.textContent = title;
      const list = document.createElement("ul");
      for (const value of values) {
        const rule = FACET_CHOICE[name];
        const item = document.createElement("li");
        const offered = !rule.offered || rule.offered(value);
        const node = document.createElement(offered ? "button" : "span");
        node.className = "facet";
        node.textContent = `${value.label} `;
        const count = document.createElement("span");
        count.className = "count";
        count.textContent = `(${value.count})`;
        node.append(count);
        if (offered) {
          const on = rule.chosen(value);
          node.type = "button";
          node.setAttribute("aria-pressed", String(on));
          node.addEventListener("click", () => {
            rule.choose(value, !on);
            showBrand();
            checked(() => searchText(text, 1));
          });
        }
        item.append(node);
        list.append(item);
      }
      group.append(heading, list);
      groups.push(group);
    }
    $("facet-groups").replaceChildren(...groups);
    $("facets").hidden = !groups.length;
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

  function searchText(text, page) {
    const params = filters();
    params.set("q", text);
    if ($("sort").value !== "relevance") params.set("sort", $("sort").value);
    if (page > 1) params.set("page", String(page));
    remember(params);
    run({ url: `/api/search/?${withK(params)}`, init: {} }, `“${text}”`, text);
  }

  function searchPhoto(file) {
    const data = new FormData();
    data.append("image", file);
    const params = filters();
    params.delete("brand"); // photo and "more like this" searches take no brand
    for (const [key, value] of withK(params)) data.append(key, value);
    const preview = $("preview");
    preview.querySelector("img").src = URL.createObjectURL(file);
    preview.querySelector("span").textContent = file.name;
    preview.hidden = false;
    remember(params);
    run(
      { url: "/api/search/", init: { method: "POST", body: data, headers: { "X-CSRFToken": csrf() } } },
      "your photo",
    );
  }

  function similar(id, title) {
    $("preview").hidden = true;
    const params = filters();
    params.delete("brand");
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
      checked(() => searchText(text, 1));
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
  if (["price", "-price"].includes(start.get("sort"))) $("sort").value = start.get("sort");
  showBrand();
  $("clear-brand").addEventListener("click", () => {
    $("brand").value = "";
    showBrand();
    const text = $("q").value.trim();
    if (text) checked(() => searchText(text, 1));
  });
  $("sort").addEventListener("change", () => {
    const text = $("q").value.trim();
    if (text) checked(() => searchText(text, 1));
  });
  // Facets sit beside the results on a wide screen, folded above them on a phone.
  $("facets-box").open = window.matchMedia("(min-width: 601px)").matches;
  if (start.get("q")) {
    $("q").value = start.get("q");
    const page = Number.parseInt(start.get("page") || "1", 10);
    checked(() => searchText(start.get("q").trim(), page > 0 ? page : 1));
  } else if (/^\d+$/.test(start.get("similar") || "")) {
    checked(() => similar(start.get("similar"), ""));
  }
})();
