// Rule form: show only the fields of the chosen policy type or degrade action as soon as the choice changes
// (the form works without this script: the "Show the fields" button posts the choice back).
"use strict";
(function () {
  function fit(group) {
    var select = group.querySelector("select[data-choice]");
    if (!select) return;
    group.querySelectorAll(".field[data-types]").forEach(function (div) {
      var wanted = div.getAttribute("data-types").split(" ").indexOf(select.value) >= 0;
      var input = div.querySelector("input, textarea, select");
      var keep = div.hasAttribute("data-keep") && input && input.value.trim() !== "";
      div.hidden = !(wanted || keep);
    });
  }
  document.querySelectorAll("[data-choice-group]").forEach(function (group) {
    group.querySelectorAll("button.refresh").forEach(function (b) { b.hidden = true; });
    var select = group.querySelector("select[data-choice]");
    if (select) select.addEventListener("change", function () { fit(group); });
    fit(group);
  });
})();
