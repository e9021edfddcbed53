// Sliding-window generator (FINN: ConvolutionInputGenerator), NHWC, SIMD channels per word.
//
// (IH, IW, C) -> (OH, OW, KH*KW*C), element order (ky, kx, c), c innermost.
// Line buffer of BR = pow2 >= KH + SH rows, each row padded to a power-of-two number of words
// so an address is just {row slot, word-in-row} (no multipliers in the address path).
// The write side and the read side run decoupled: the writer may fill row w only while
// w < (top row of the window being read) + BR, and the reader starts an output pixel only when
// every word it needs has been written. Row counters are global (they continue across frames),
// so the next frame streams in while the last windows of the current one are read out.
// The synchronous buffer's read data register (a block RAM's own output latch when the buffer
// lands there) is followed by two registers, a plain one and the output register: a block RAM's
// clock-to-out must not reach the next module's logic, nor travel far on its own (stitched CNV
// on ECP5: 94.5 MHz with the RAM output as the port; 96.8 MHz with one register after it, which
// the placer put 53 rows away next to the consumer: 5.8 ns clock-to-out plus 4.3 ns of routing).
// The middle register can sit next to the RAM and the last one next to the consumer. All three
// advance together on adv (output empty or taken).
//
// Latency: the first window word leaves 4 cycles after the input word that completes the first
// window (word ((KH-1)*IW + KW)*CF - 1 of the frame, 0-based) is accepted (t -> t + 4); then one
// word per cycle while the window's rows are present. No wide counters (timing): see the row bookkeeping below;
// no wide compares on the read-enable path either: every "counter at its last value" test is a
// flag register updated with its counter (post-route, the compares cost ~1.5 ns on ECP5).
module codesign_swg #(
    parameter integer IH = 4,
    parameter integer IW = 4,
    parameter integer C = 1,
    parameter integer SIMD = 1,
    parameter integer KH = 2,
    parameter integer KW = 2,
    parameter integer SH = 1,
    parameter integer SW = 1,
    parameter integer BITS = 8,
    parameter integer OH = (IH - KH) / SH + 1,
    parameter integer OW = (IW - KW) / SW + 1,
    parameter integer CF = C / SIMD,
    parameter integer RW = IW * CF,
    parameter integer RWB = (RW > 1) ? $clog2(RW) : 1,
    parameter integer BRB = $clog2(KH + SH),
    parameter integer WW = SIMD * BITS
) (
    input  wire          ap_clk,
    input  wire          ap_rst_n,
    input  wire [WW-1:0] in0_V_TDATA,
    input  wire          in0_V_TVALID,
    output wire          in0_V_TREADY,
    output reg  [WW-1:0] out_V_TDATA,
    output reg           out_V_TVALID,
    input  wire          out_V_TREADY
);
    localparam integer BR = 1 << BRB;
    localparam integer KWC = KW * CF;

    // no_rw_check: the reader never reads a word in the cycle it is written (it reads only words
    // already written, the writer only rows no window reads), so Yosys need not build its
    // read-during-write bypass (a mux on every RAM output bit, measured on ECP5: it sat between the
    // block RAM and the next register, and kept that register out of the RAM's output register)
    (* no_rw_check *)
    reg [WW-1:0] mem [0:BR*(1<<RWB)-1];

    // Row bookkeeping without wide counters (timing): only the slot bits of the global row
    // counters are kept, plus d = (global row being written) - (global top row of the window
    // being read), a small signed number in [-(IH), BR]. The frame wrap moves the read window
    // by the constant DJ = IH - (OH-1)*SH rows (to the next frame's first row), all other window
    // moves by SH rows.
    localparam integer DJ = IH - (OH - 1) * SH;
    localparam integer DB = $clog2(IH + BR + 1) + 2;   // signed width of d

    // ---------------- write side ----------------
    reg [BRB-1:0] w_slot;       // (global row being written) mod BR
    reg [RWB-1:0] w_wi;         // word index within that row
    reg signed [DB-1:0] d;      // rows written ahead of the window's top row
    reg w_last;                 // w_wi == RW - 1
    wire w_ok = (d < BR);
    assign in0_V_TREADY = w_ok;
    wire w_fire = w_ok && in0_V_TVALID;
    wire w_row_done = w_fire && w_last;

    always @(posedge ap_clk) begin
        if (w_fire) mem[{w_slot, w_wi}] <= in0_V_TDATA;
    end

    // ---------------- read side ----------------
    reg [BRB-1:0] r_slot;      // (global top row of the window) mod BR
    reg [15:0] oy, ox, ky;
    reg [15:0] koff;           // kx*CF + cf within the current kernel row
    reg [RWB:0] pix_base;      // ox*SW*CF
    reg [RWB+1:0] need_wi;     // pix_base + KWC (kept in a register: no adder before the compare)
    reg koff_last, ky_last, ox_last, oy_last;  // koff == KWC-1, ky == KH-1, ox == OW-1, oy == OH-1
    reg pix_start;                             // ky == 0 && koff == 0: a new output pixel
    wire have = (d > KH - 1) || ((d == KH - 1) && ({2'b00, w_wi} >= need_wi));
    wire adv = !out_V_TVALID || out_V_TREADY;
    wire r_fire = adv && (!pix_start || have);
    wire [BRB-1:0] r_rslot = r_slot + ky[BRB-1:0];
    wire [RWB-1:0] r_wi = pix_base + koff;
    wire last_k = koff_last && ky_last;
    wire r_row_move = r_fire && last_k && ox_last;
    wire r_frame_wrap = r_row_move && oy_last;

    reg [WW-1:0] rd;           // the buffer's read register
    reg [WW-1:0] rd2;          // the RAM-side register (see the header)
    reg rd_v, rd2_v;
    // each register loads only when its predecessor holds a word: the three enables differ, so
    // synth_xilinx cannot turn the chain into SRL16 shift registers (an SRL as the port register
    // has a slow clock-to-out, and its LUT would cost more than the flip-flops it replaces)
    always @(posedge ap_clk) begin
        if (adv) rd <= mem[{r_rslot, r_wi}];
        if (adv && rd_v) rd2 <= rd;
        if (adv && rd2_v) out_V_TDATA <= rd2;
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            w_slot <= 0; w_wi <= 0; d <= 0; w_last <= (RW == 1);
            r_slot <= 0;
            oy <= 0; ox <= 0; ky <= 0; koff <= 0; pix_base <= 0; need_wi <= KWC;
            koff_last <= (KWC == 1); ky_last <= (KH == 1); ox_last <= (OW == 1); oy_last <= (OH == 1);
            pix_start <= 1'b1;
            out_V_TVALID <= 1'b0; rd_v <= 1'b0; rd2_v <= 1'b0;
        end else begin
            if (w_fire) begin
                w_last <= w_last ? (RW == 1) : (w_wi == RW - 2);
                if (w_last) begin
                    w_wi <= 0;
                    w_slot <= w_slot + 1'b1;
                end else begin
                    w_wi <= w_wi + 1'b1;
                end
            end
            d <= d + (w_row_done ? 1 : 0) - (r_frame_wrap ? DJ : (r_row_move ? SH : 0));
            if (adv) begin
                rd_v <= r_fire;
                rd2_v <= rd_v;
                out_V_TVALID <= rd2_v;
            end
            if (r_fire) begin
                pix_start <= last_k;
                koff_last <= koff_last ? (KWC == 1) : (koff == KWC - 2);
                if (koff_last) begin
                    koff <= 0;
                    ky_last <= ky_last ? (KH == 1) : (ky == KH - 2);
                    if (ky_last) begin
                        ky <= 0;
                        ox_last <= ox_last ? (OW == 1) : (ox == OW - 2);
                        if (ox_last) begin
                            ox <= 0;
                            oy_last <= oy_last ? (OH == 1) : (oy == OH - 2);
                            pix_base <= 0;
                            need_wi <= KWC;
                            if (oy_last) begin
                                oy <= 0;
                                r_slot <= r_slot + DJ;
                            end else begin
                                oy <= oy + 1'b1;
                                r_slot <= r_slot + SH;
                            end
                        end else begin
                            ox <= ox + 1'b1;
                            pix_base <= pix_base + SW * CF;
                            need_wi <= need_wi + SW * CF;
                        end
                    end else begin
                        ky <= ky + 1'b1;
                    end
                end else begin
                    koff <= koff + 1'b1;
                end
            end
        end
    end
endmodule
