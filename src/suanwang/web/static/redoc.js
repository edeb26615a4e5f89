"use strict";
window.addEventListener("DOMContentLoaded", function () { Redoc.init("/openapi.json", {}, document.getElementById("redoc")); });
