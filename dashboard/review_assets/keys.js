// Keyboard shortcuts of the review queue (dashboard/review.py): one key per verdict, as labelling tools have.
// Enter: reject the selected logos and accept the rest; r: reject selected; a: accept selected;
// l: relabel selected (focus the label field first when it is empty); u: undo the last screen.
(function () {
  function click(id) {
    // after the key's own default handling, with the focused logo's checkbox let go: the click then
    // reads the selection as the page shows it
    if (document.activeElement && document.activeElement.blur) { document.activeElement.blur(); }
    setTimeout(function () {
      var button = document.getElementById(id);
      if (button && !button.disabled) { button.click(); }
    }, 0);
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    var textual = ["text", "password", "search", "number", "email", "url"];
    var typing = target && ((target.tagName === "INPUT" && textual.indexOf(target.type) >= 0) ||
                            target.tagName === "TEXTAREA" || target.isContentEditable);
    if (typing) {
      if (event.key === "Enter" && target.id === "relabel-text") { event.preventDefault(); click("relabel-selected"); }
      return;
    }
    var keys = {"Enter": "confirm-rest", "r": "reject-selected", "a": "accept-selected", "u": "undo-review"};
    if (event.key === "l") {
      var field = document.getElementById("relabel-text");
      if (field && !field.value) { event.preventDefault(); field.focus(); return; }
      click("relabel-selected");
      return;
    }
    if (keys[event.key]) { event.preventDefault(); click(keys[event.key]); }
  });
})();
