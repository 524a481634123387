#!/usr/bin/env node
// Rank a pool with alquery from Node.js, using only the proto and the
// standard gRPC packages. Reads a JSON input file:
//
//   {"probabilities": [[0.7, 0.3], ...],  // (n_pool, n_classes)
//    "embeddings": [[0.1, 2.0], ...],     // (n_pool, n_features)
//    "batch_size": 5}
//
// sends it twice, to uncertainty.margin (probabilities as float64) and to
// diversity.kcenter (embeddings as float32), and prints the ranked pool
// positions of each as one JSON object on stdout.
//
// Usage: node rank.js HOST:PORT INPUT.json
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');
const DEADLINE_MS = 30000;

// Bytes per element, and the Buffer method that writes one element
// little-endian, for each wire dtype.
const ENCODERS = {
  D_TYPE_FLOAT32: { size: 4, write: 'writeFloatLE' },
  D_TYPE_FLOAT64: { size: 8, write: 'writeDoubleLE' },
  D_TYPE_INT32: { size: 4, write: 'writeInt32LE' },
};

function loadService() {
  const definition = protoLoader.loadSync('alquery/v1/query.proto', {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the proto: ranked_indices, batch_size
    longs: Number, // int64 answers as numbers (pool positions fit easily)
    enums: String,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition).alquery.v1.QueryService;
}

// A wire Tensor from rows of numbers: shape from the rows, data as raw
// row-major little-endian bytes of the given dtype.
function tensor(rows, dtype) {
  const shape = [rows.length, rows[0].length];
  const values = rows.flat();
  if (values.length !== shape[0] * shape[1]) {
    throw new Error('rows must all have the same length');
  }
  const { size, write } = ENCODERS[dtype];
  const data = Buffer.alloc(values.length * size);
  values.forEach((value, i) => data[write](value, i * size));
  return { dtype, shape, data };
}

function rank(stub, request) {
  const deadline = new Date(Date.now() + DEADLINE_MS);
  return new Promise((resolve, reject) => {
    stub.Rank(request, { deadline }, (error, response) => {
      if (error) {
        reject(new Error(`${grpc.status[error.code]}: ${error.details}`));
      } else {
        resolve(response.ranked_indices);
      }
    });
  });
}

async function main(argv) {
  if (argv.length !== 2) {
    process.stderr.write('usage: node rank.js HOST:PORT INPUT.json\n');
    return 2;
  }
  const [target, inputPath] = argv;
  const input = JSON.parse(fs.readFileSync(inputPath, 'utf8'));
  const QueryService = loadService();
  const stub = new QueryService(target, grpc.credentials.createInsecure());

  try {
    const answers = {};
    answers['uncertainty.margin'] = await rank(stub, {
      pool: { probabilities: tensor(input.probabilities, 'D_TYPE_FLOAT64') },
      uncertainty: { method: 'METHOD_MARGIN' },
      batch_size: input.batch_size,
    });
    answers['diversity.kcenter'] = await rank(stub, {
      pool: { embeddings: tensor(input.embeddings, 'D_TYPE_FLOAT32') },
      diversity: { method: 'METHOD_KCENTER' },
      batch_size: input.batch_size,
    });
    process.stdout.write(JSON.stringify(answers) + '\n');
    return 0;
  } catch (error) {
    process.stderr.write(`${error.message}\n`);
    return 1;
  } finally {
    stub.close();
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
