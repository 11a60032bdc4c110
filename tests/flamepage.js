// Runs a flame graph page's script under Node.js with a small stand-in for the DOM, and prints
// what it drew as JSON: each box (text, title, class, position, fill), the graph choices and the
// "Matched" line.  Usage: node flamepage.js PAGE.html [#search=REGEX]
"use strict";
const fs = require("fs");

const html = fs.readFileSync(process.argv[2], "utf8");
const data = /<script type="application\/json" id="data">([\s\S]*?)<\/script>/.exec(html)[1];
const script = /<script>\n([\s\S]*?)<\/script>/.exec(html)[1];

class Element {
  constructor(tag) {
    this.tag = tag;
    this.children = [];
    this.style = {};
    this.listeners = {};
    this.className = "";
    this.title = "";
    this.value = "";
    this.clientWidth = 1000;
    this.text = "";
  }
  get textContent() { return this.text; }
  set textContent(value) { this.text = String(value); this.children = []; }
  appendChild(child) { this.children.push(child); return child; }
  addEventListener(type, listener) { (this.listeners[type] = this.listeners[type] || []).push(listener); }
}

const elements = {};
for (const id of ["graph", "info", "which", "search", "matched", "title", "reset", "data"]) {
  elements[id] = new Element("div");
}
elements.data.text = data;
global.document = {getElementById: (id) => elements[id], createElement: (tag) => new Element(tag)};
global.window = {addEventListener() {}};
global.location = {hash: process.argv[3] || ""};

new Function(script)();

const boxes = elements.graph.children.map((box) => ({
  text: box.text, title: box.title, class: box.className, fill: box.style.background,
  left: parseFloat(box.style.left), top: parseFloat(box.style.top), width: parseFloat(box.style.width),
}));
process.stdout.write(JSON.stringify({
  boxes, matched: elements.matched.text, options: elements.which.children.map((o) => o.text),
}));
