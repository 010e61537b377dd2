/** OHIF v3 configuration for the teaching archive (copied into vendor/ohif/ by
 * ops/ohif/install.py; the archive serves it at /teaching/ui/viewer/app-config.js).
 *
 * One data source: the archive's own DICOMweb routes (archive/dicomweb/), which answer
 * only for released studies the signed-in user may view, and redact the metadata of a
 * study presented as an unknown until that user reveals it. Same origin: the browser
 * sends the web session cookie (HttpOnly, SameSite=Strict, Path=/teaching/ui), nothing
 * else authenticates the viewer. No study list (cases are found in the catalogue), no
 * local files, no URL-loaded configuration or customizations, no downloads (the
 * archive serves no whole DICOM instance, and the Capture button is removed).
 */
const ARCHIVE_DICOMWEB = window.location.origin + '/teaching/ui/dicomweb';

window.config = {
  name: 'teaching-archive',
  routerBasename: '/teaching/ui/viewer',
  extensions: [],
  modes: [],
  showStudyList: false,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  allowMultiSelectExport: false,
  investigationalUseDialog: { option: 'never' },
  maxNumRequests: { interaction: 100, thumbnail: 4, prefetch: 10 },
  showErrorDetails: 'production',
  defaultDataSourceName: 'archive',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'archive',
      configuration: {
        friendlyName: 'Teaching archive',
        name: 'archive',
        wadoUriRoot: ARCHIVE_DICOMWEB,
        qidoRoot: ARCHIVE_DICOMWEB,
        wadoRoot: ARCHIVE_DICOMWEB,
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: false,
        supportsStow: false,
        supportsReject: false,
        dicomUploadEnabled: false,
        staticWado: false,
        singlepart: false,
        bulkDataURI: { enabled: false },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
  customizationService: {
    global: {
      // No onboarding tour popping over the images (teaching sessions, tests).
      'ohif.tours': { $set: [] },
      // The school's four presets for CT (README "The viewer"); hotkeys 1-4.
      'cornerstone.windowLevelPresets': {
        $set: {
          CT: [
            { id: 'ct-soft-tissue', description: 'Soft tissue', window: '400', level: '40' },
            { id: 'ct-lung', description: 'Lung', window: '1500', level: '-600' },
            { id: 'ct-bone', description: 'Bone', window: '2500', level: '480' },
            { id: 'ct-brain', description: 'Brain', window: '80', level: '40' },
          ],
        },
      },
    },
  },
  httpErrorHandler: error => {
    // 403: the archive refused (not released, not yours to view, or signed out).
    console.warn('archive refused a viewer request', error && error.status);
  },
};
