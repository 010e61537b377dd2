// File fields with data-into="ID": the chosen file is read in the browser and put, base64,
// into the hidden field ID, so the form posts as an ordinary urlencoded form (Orthanc
// 1.10 handles multipart/form-data bodies itself and never hands them to the archive).
// The form is sent only once every file has been read.
(function () {
  "use strict";
  document.querySelectorAll("input[type=file][data-into]").forEach(function (input) {
    var target = document.getElementById(input.dataset.into);
    var form = input.form;
    if (!target || !form) { return; }
    var pending = null;
    input.addEventListener("change", function () {
      target.value = "";
      var file = input.files && input.files[0];
      if (!file) { return; }
      pending = new Promise(function (resolve, reject) {
        var reader = new FileReader();
        reader.onload = function () {
          var text = String(reader.result);
          target.value = text.slice(text.indexOf(",") + 1);  // drop "data:...;base64,"
          resolve();
        };
        reader.onerror = reject;
        reader.readAsDataURL(file);
      });
    });
    form.addEventListener("submit", function (event) {
      if (target.value) { return; }  // the file field has no name: only the base64 is sent
      event.preventDefault();
      if (pending) { pending.then(function () { form.requestSubmit(); }); }
    });
  });
}());
