import { definePipeline, defineProject } from 'gantry';

/**
 * Product photos sorted into one folder per class (`data/images/<class>/*.png|jpg`), the layout most image datasets
 * come in. Every image is decoded and resized to 28×28 greyscale at ingest; the classes are the folder names, and a
 * published version answers with them. Fill data/images with your own photos, or run `npm run images` for 2,000
 * Fashion-MNIST images written as PNG files.
 */
const fashionFolder = definePipeline({
  name: 'fashion-folder',
  description: 'Clothing classifier from a folder of images per class',
  data: {
    source: 'image-folder',
    path: 'data/images',
    image: { height: 28, width: 28, channels: 1 },
    testFraction: 0.2,
    onMalformed: 'skip',
  },
  model: { name: 'fashion-folder', architecture: 'mlp', options: { hiddenUnits: [128], dropout: 0.1 } },
  train: { epochs: 8, batchSize: 64, learningRate: 0.002 },
  evaluation: { minAccuracy: 0.7 },
});

export default defineProject({ name: 'fashion-folder', pipelines: [fashionFolder] });
