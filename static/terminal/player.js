// Recording playback: asciinema-player on /terminal/recordings/<id>/cast, with a speed selector.
// The player cannot change speed in place, so a new speed re-creates it at the same moment.
(function () {
  "use strict";
  function start() {
    var box = document.getElementById("recording-player");
    var optionsNode = document.getElementById("player-options");
    if (!box || !optionsNode || !window.AsciinemaPlayer) { return; }
    var options = JSON.parse(optionsNode.textContent);
    var speed = document.getElementById("recording-speed");
    var player = null;
    var playing = false;

    function create(startAt, autoPlay) {
      if (player) { player.dispose(); }
      box.textContent = "";
      playing = false;
      player = window.AsciinemaPlayer.create(
        { url: box.dataset.castUrl, fetchOpts: { credentials: "same-origin" } },
        box,
        {
          speed: Number(speed.value),
          startAt: startAt,
          autoPlay: autoPlay,
          preload: true,
          idleTimeLimit: options.idleTimeLimit,
          markers: options.markers,
          controls: true,
          fit: "width"
        }
      );
      player.addEventListener("play", function () { playing = true; });
      player.addEventListener("playing", function () { playing = true; });
      player.addEventListener("pause", function () { playing = false; });
      player.addEventListener("ended", function () { playing = false; });
      window.passportPlayer = player;
    }

    speed.addEventListener("change", function () {
      if (!player) { return; }
      create(player.getCurrentTime() || 0, playing);
    });

    if (box.dataset.verified === "true") {
      // Following a search hit (?t=) plays from the moment the text appeared.
      create(options.startAt, options.startAt > 0);
    } else {
      var anyway = document.getElementById("recording-play-anyway");
      if (anyway) {
        anyway.addEventListener("click", function () {
          anyway.disabled = true;
          create(options.startAt, true);
        });
      }
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
