export declare const CLIENT_DIST: string;
/** Writes dist/client/herald.js and herald.iife.js (minified, with source maps) into `outdir`. */
export declare function buildClient(outdir?: string): Promise<{ esm: string; iife: string }>;
/** Bytes of the file gzipped at level 9. */
export declare function gzipSize(path: string): number;
/** Copies src/demo/demo.html to dist/demo/demo.html (GET /demo of the built server). */
export declare function copyDemo(): void;
