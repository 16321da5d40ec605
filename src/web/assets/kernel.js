/*
 * piswarm's worker computation in JavaScript, for browsers (Web Workers and pages).
 *
 * A plain script: no build step, no dependencies, no modules. Loading it (importScripts in a Web
 * Worker, <script> in a page) defines `self.PiswarmKernel`:
 *
 *   evenSum(a, b)      -> BigInt  exact sum of the even integers of [a, b]  (src/maths/sums.rs)
 *   oddSum(a, b)       -> BigInt  exact sum of the odd integers of [a, b]   (src/maths/sums.rs)
 *   piPartial(a, b, kernel)
 *                      -> Number  4·Σₙ₌ₐᵇ (−1)ⁿ/(2n+1) by the kernel 'oct' (the default) or
 *                                 'quad', bit-identical to piswarm::maths::kernel::Kernel's
 *                                 pi_partial; throws a RangeError on an interval check_interval
 *                                 rejects, a TypeError on an unknown kernel
 *   compute(id, a, b, kernel)
 *                      -> {id, a, b, even_sum, odd_sum, pi, duration_s}: the fields of protocol
 *                         v1's `result` message (WorkResult in src/protocol.rs), like
 *                         piswarm::worker::compute: integers as decimal strings, pi a Number
 *                         (NaN for an interval outside the supported range, as in Rust)
 *
 * a, b (and id) are BigInts, decimal strings, or non-negative safe-integer Numbers. Indexes and
 * sums are BigInt throughout: ids go up to 2^64 − 1, the sums up to about 2^102, and a count like
 * b − a + 1 must be exact. Term indexes go up to 2^52 − 1, so u = 2n + 1 goes up to
 * 2^53 − 1 = Number.MAX_SAFE_INTEGER: the only integers that become Numbers are the ones the Rust
 * kernel converts with `as f64` (2a + 1, blocks·LANES, the lane and leftover counts), all below
 * 2^53 and hence exact on both sides.
 *
 * BIT-IDENTICAL TO THE RUST KERNEL: READ THIS BEFORE CHANGING EITHER SIDE.
 * JavaScript Numbers are IEEE 754 binary64 with round-to-nearest-even, and engines neither
 * reassociate nor contract a*b+c into a fused multiply-add — the same guarantees Rust gives. So
 * performing exactly the same operations in exactly the same order gives the same bits. Every
 * floating-point line below mirrors one in src/maths/kernel.rs (line numbers as of this file's
 * creation; the function names are the stable reference):
 *
 *   kernel.js                              src/maths/kernel.rs
 *   LANES = 32                             LANES (l. 29)
 *   checkInterval                          maths::check_interval (src/maths/mod.rs l. 37)
 *   piPartial: count, pairs, blocks, u0    pi_partial_with (l. 85–90)
 *   laneSums                               lane_sums_generic with quad_half (Kernel::Quad);
 *                                          loops swapped, same operations per lane (see laneSums)
 *   laneSumsOct, octHalf                   lane_sums_generic with oct_half (Kernel::Oct)
 *   piPartial: hi/lo TwoSum updates        DoubleDouble::add / value (l. 205–216)
 *   piPartial: lanes into the total        pi_partial_with (l. 93–98), lanes 0..31 in order,
 *                                          2·sum then −2·comp for each lane
 *   piPartial: leftover pairs, last term   pi_partial_with (l. 100–107) with pair_term (l. 128)
 *   piPartial: sign                        pi_partial_with (l. 108–109)
 *   evenSum / oddSum / steppedSum          sums.rs even_sum / odd_sum / stepped_sum
 *
 * Any change to the method in kernel.rs (LANES, the grouping, the order of the additions, the
 * compensation) changes the bits and must be made here too, and vice versa;
 * tests/browser_kernel.rs checks ≥ 1 000 intervals in headless Chromium against the Rust kernel.
 */
(function (root) {
  'use strict';

  /** Number of independent Kahan lanes; kernel.rs LANES. A multiple of 4 (laneSumsOct takes 4 lanes at a time, laneSums 2). */
  var LANES = 32;
  /** Term indexes n satisfy n < MAX_TERMS = 2^52; maths::MAX_TERMS. */
  var MAX_TERMS = 4503599627370496n; // 2n ** 52n
  var DECIMAL = /^[0-9]{1,40}$/;

  /** A non-negative integer from a BigInt, a decimal string, or a safe-integer Number. */
  function toBigInt(x, what) {
    if (typeof x === 'bigint') {
      if (x < 0n) {
        throw new RangeError(what + ' is negative: ' + x);
      }
      return x;
    }
    if (typeof x === 'string') {
      if (!DECIMAL.test(x)) {
        throw new TypeError(what + " '" + x + "' is not a non-negative decimal integer");
      }
      return BigInt(x);
    }
    if (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0) {
      return BigInt(x);
    }
    throw new TypeError(what + ' must be a BigInt, a decimal string or a safe integer: ' + x);
  }

  /** maths::check_interval: a non-empty interval of supported term indexes. */
  function checkInterval(a, b) {
    if (a > b) {
      throw new RangeError('interval [' + a + ', ' + b + '] is empty: a must not exceed b');
    }
    if (b >= MAX_TERMS) {
      throw new RangeError('term index ' + b + ' is beyond the supported range ' +
        '(term indexes must be below 2^52 = ' + MAX_TERMS + ')');
    }
  }

  /** sums.rs stepped_sum: lo and hi of the same parity. */
  function steppedSum(lo, hi) {
    var count = (hi - lo) / 2n + 1n;
    return count * ((lo + hi) / 2n);
  }

  /** sums.rs even_sum: the sum of the even integers of [a, b] (0n when there is none). */
  function evenSum(a, b) {
    a = toBigInt(a, 'a');
    b = toBigInt(b, 'b');
    if (a > b) {
      return 0n;
    }
    var first = a + (a & 1n);
    var last = b - (b & 1n);
    if (first > last) {
      return 0n;
    }
    return steppedSum(first, last);
  }

  /** sums.rs odd_sum: the sum of the odd integers of [a, b] (0n when there is none). */
  function oddSum(a, b) {
    a = toBigInt(a, 'a');
    b = toBigInt(b, 'b');
    if (a > b) {
      return 0n;
    }
    var first = a | 1n;
    var last;
    if ((b & 1n) === 1n) {
      last = b;
    } else if (b === 0n) {
      return 0n;
    } else {
      last = b - 1n;
    }
    if (first > last) {
      return 0n;
    }
    return steppedSum(first, last);
  }

  // The lanes' results, reused by every call (one kernel runs at a time per global scope).
  var laneSum = new Float64Array(LANES);
  var laneComp = new Float64Array(LANES);

  /**
   * kernel.rs lane_sums_generic: `blocks` rounds of one quad term per lane, Kahan-compensated
   * (the lanes hold half the quad terms; the caller doubles them). Lane l of round i takes the four
   * terms starting at u = u0 + 8·(LANES·i + l). Leaves the results in laneSum / laneComp.
   *
   * The lanes never interact, so each lane's result depends only on its own sequence of operations:
   * kernel.rs runs the rounds outside and the lanes inside; here the loops are swapped, two lanes
   * at a time, every lane performing exactly kernel.rs's operations in kernel.rs's order:
   *   u[l] = u0 + 8·l;  then per round:  p = u(u+2);  r = (u+4)(u+6);  term = (p+r)/(p·r);
   *   y = term − comp;  t = sum + y;  comp = (t − sum) − y;  sum = t;  u += 8·LANES.
   * (Why: V8 keeps the lanes' u, sum and comp in registers, where a Float64Array of 32 lanes
   * costs loads and stores; in Chromium 148 four lanes gave about 2.1 instead of 1.3 billion
   * terms/s; in Chromium 156 on an AMD EPYC with AVX2 two lanes give 1.7–1.8 where four gave
   * 1.0–1.3 (docs/performance.md). Same bits either way: the test checks them.)
   */
  function laneSums(u0, blocks) {
    var step = 8 * LANES; // 8.0 * LANES as f64
    for (var g = 0; g < LANES; g += 2) {
      // kernel.rs: *ul = u0 + 8.0 * l as f64, for l = g, g + 1
      var ua = u0 + 8 * g;
      var ub = u0 + 8 * (g + 1);
      var sa = 0, sb = 0, ca = 0, cb = 0;
      var p, r, y, t;
      for (var i = 0; i < blocks; i++) {
        // lane g: quad_half(u), then the Kahan update
        p = ua * (ua + 2);
        r = (ua + 4) * (ua + 6);
        y = (p + r) / (p * r) - ca;
        t = sa + y;
        ca = (t - sa) - y;
        sa = t;
        ua += step;
        // lane g + 1: the same
        p = ub * (ub + 2);
        r = (ub + 4) * (ub + 6);
        y = (p + r) / (p * r) - cb;
        t = sb + y;
        cb = (t - sb) - y;
        sb = t;
        ub += step;
      }
      keepLanes(g, sa, ca, sb, cb);
    }
  }

  /** Lanes g and g + 1's sums and compensations, into laneSum / laneComp. */
  function keepLanes(g, sa, ca, sb, cb) {
    laneSum[g] = sa;
    laneSum[g + 1] = sb;
    laneComp[g] = ca;
    laneComp[g + 1] = cb;
  }

  /** kernel.rs oct_half: the eight terms from u add up to 2·octHalf(u). */
  function octHalf(u) {
    var p1 = u * (u + 2);
    var r1 = (u + 4) * (u + 6);
    var p2 = (u + 8) * (u + 10);
    var r2 = (u + 12) * (u + 14);
    var m1 = p1 * r1;
    var m2 = p2 * r2;
    return ((p1 + r1) * m2 + (p2 + r2) * m1) / (m1 * m2);
  }

  /**
   * kernel.rs lane_sums_generic with oct_half (Kernel::Oct): as laneSums, one oct term per lane
   * and round, lane l of round i taking the eight terms from u = u0 + 16·(LANES·i + l). Same
   * loop swap, four lanes at a time, each lane performing kernel.rs's operations in its order.
   */
  function laneSumsOct(u0, blocks) {
    var step = 16 * LANES; // group_step * LANES as f64, group_step = 16.0
    for (var g = 0; g < LANES; g += 4) {
      var u0l = u0 + 16 * g, u1l = u0 + 16 * (g + 1), u2l = u0 + 16 * (g + 2), u3l = u0 + 16 * (g + 3);
      var s0 = 0, s1 = 0, s2 = 0, s3 = 0, c0 = 0, c1 = 0, c2 = 0, c3 = 0;
      var y, t;
      for (var i = 0; i < blocks; i++) {
        // One lane a line: oct_half(u), then the Kahan update.
        y = octHalf(u0l) - c0; t = s0 + y; c0 = (t - s0) - y; s0 = t; u0l += step;
        y = octHalf(u1l) - c1; t = s1 + y; c1 = (t - s1) - y; s1 = t; u1l += step;
        y = octHalf(u2l) - c2; t = s2 + y; c2 = (t - s2) - y; s2 = t; u2l += step;
        y = octHalf(u3l) - c3; t = s3 + y; c3 = (t - s3) - y; s3 = t; u3l += step;
      }
      keepLanes(g, s0, c0, s1, c1);
      keepLanes(g + 2, s2, c2, s3, c3);
    }
  }

  /** Terms per lane group of each kernel (kernel.rs Kernel::terms_per_division). */
  var KERNELS = { quad: 4, oct: 8 };

  /**
   * kernel.rs Kernel::pi_partial: the π partial sum 4·Σₙ₌ₐᵇ (−1)ⁿ/(2n+1) of the inclusive [a, b]
   * by the run's kernel ('oct', the default, or 'quad': the welcome's `kernel`).
   */
  function piPartial(a, b, kernel) {
    kernel = kernel === undefined ? 'oct' : kernel;
    if (!Object.prototype.hasOwnProperty.call(KERNELS, kernel)) {
      throw new TypeError("unknown π kernel '" + kernel + "' (this page has: quad, oct)");
    }
    a = toBigInt(a, 'a');
    b = toBigInt(b, 'b');
    checkInterval(a, b);
    var count = b - a + 1n;
    var pairs = count / 2n;
    // A block is one group (quad: two pairs, oct: four) per lane. blocks < 2^46: a safe integer.
    var pairsPerGroup = BigInt(KERNELS[kernel] / 2);
    var groupStep = 2 * KERNELS[kernel]; // 2 * terms_per_division as f64
    var blocks = pairs / (pairsPerGroup * BigInt(LANES));
    // u = 2n + 1 for the first term of the first pair; exact below 2^53.
    var u0 = Number(2n * a + 1n);
    if (kernel === 'oct') {
      laneSumsOct(u0, Number(blocks));
    } else {
      laneSums(u0, Number(blocks));
    }

    // DoubleDouble (hi + lo), updated with Knuth's TwoSum exactly as DoubleDouble::add.
    var hi = 0;
    var lo = 0;
    var x, sNew, bp;
    for (var l = 0; l < LANES; l++) {
      // total.add(2.0 * s)
      x = 2 * laneSum[l];
      sNew = hi + x;
      bp = sNew - hi;
      lo += (hi - (sNew - bp)) + (x - bp);
      hi = sNew;
      // total.add(-2.0 * c)
      x = -2 * laneComp[l];
      sNew = hi + x;
      bp = sNew - hi;
      lo += (hi - (sNew - bp)) + (x - bp);
      hi = sNew;
    }
    // Pairs left over after the whole blocks, then the unpaired last term.
    // u0 + group_step * (blocks * LANES) as f64
    var u = u0 + groupStep * Number(blocks * BigInt(LANES));
    var leftover = Number(pairs % (pairsPerGroup * BigInt(LANES)));
    for (var k = 0; k < leftover; k++) {
      x = 2 / (u * (u + 2)); // pair_term(u)
      sNew = hi + x;
      bp = sNew - hi;
      lo += (hi - (sNew - bp)) + (x - bp);
      hi = sNew;
      u += 4;
    }
    if (count % 2n === 1n) {
      x = 1 / u;
      sNew = hi + x;
      bp = sNew - hi;
      lo += (hi - (sNew - bp)) + (x - bp);
      hi = sNew;
    }
    var sign = a % 2n === 0n ? 4 : -4;
    return sign * (hi + lo); // sign * total.value()
  }

  var clock = (typeof performance !== 'undefined' && performance && performance.now)
    ? function () { return performance.now() / 1000; }
    : function () { return Date.now() / 1000; };

  /**
   * worker::compute: one interval's result, shaped like protocol v1's `result` message (without
   * its "type"). Throws on malformed input; an interval outside the supported range gets pi = NaN
   * (JSON.stringify makes that null, which the coordinator rejects), as in Rust.
   */
  function compute(id, a, b, kernel) {
    var start = clock();
    id = toBigInt(id, 'id');
    a = toBigInt(a, 'a');
    b = toBigInt(b, 'b');
    var pi;
    try {
      pi = piPartial(a, b, kernel);
    } catch (e) {
      if (!(e instanceof RangeError)) {
        throw e;
      }
      pi = NaN;
    }
    return {
      id: id.toString(),
      a: a.toString(),
      b: b.toString(),
      even_sum: evenSum(a, b).toString(),
      odd_sum: oddSum(a, b).toString(),
      pi: pi,
      duration_s: clock() - start,
    };
  }

  root.PiswarmKernel = {
    LANES: LANES,
    MAX_TERMS: MAX_TERMS,
    evenSum: evenSum,
    oddSum: oddSum,
    piPartial: piPartial,
    compute: compute,
  };
})(typeof self !== 'undefined' ? self : globalThis);
