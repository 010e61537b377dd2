// Teaching session: the Full screen button puts the whole session (bar and viewer) in
// the browser's full-screen mode; arrow keys with Alt step through the collection.
document.getElementById('fullscreen').addEventListener('click', function () {
  if (document.fullscreenElement) { document.exitFullscreen(); }
  else { document.documentElement.requestFullscreen(); }
});
document.addEventListener('keydown', function (e) {
  if (!e.altKey) { return; }
  var links = document.querySelectorAll('.bar a');
  for (var i = 0; i < links.length; i++) {
    var t = links[i].textContent;
    if ((e.key === 'ArrowRight' && t === 'Next') || (e.key === 'ArrowLeft' && t === 'Previous')) {
      window.location.href = links[i].href;
    }
  }
});
