// What OHIF's own index.html sets inline (the archive's CSP allows no inline script).
window.PUBLIC_URL = '/teaching/ui/viewer/';
function browserImportFunction(n) {
  return import(n);
}
