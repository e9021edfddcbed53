// Vector-Vector-Activation Unit (VVAU): depthwise convolution, PE x SIMD folded, behavioural Verilog.
//
// Input stream: the sliding window's output in its own order, (kh, kw, c) with c innermost, cut
// into words of SIMD*PE elements (element e of a word = kernel lane e / PE, channel lane e % PE).
// SIMD = 1: a word is PE channels at one kernel position; SIMD > 1 needs PE = C (a word is SIMD
// whole kernel positions). Per window: KF = K/SIMD kernel folds x CF = C/PE channel folds words,
// in the order kf outer, cf inner, so the PE*CF channel accumulators live in a small RAM
// (acc_mem, one entry per channel fold) that is read, added and written back in one stage.
// One output word (PE channels) leaves per channel fold, after the last kernel fold.
//
// Why this shape: the same stall-style pipeline as codesign_mvau.v (every register advances only
// when the output register is empty or being consumed: adv), so AXI-Stream backpressure is
// correct at any cycle without a skid buffer. Every stage is registered:
//   0 issue (counters; weight ROM address)   1 x1 + ROM q   2 products   3 adder tree (SIMD)
//   4 accumulate (acc_mem read-modify-write; threshold ROM q of this channel fold)
//   5 finished sums + the threshold word registered once more (tq5: a block-RAM output drives
//     only flip-flops)
// NT = 0: stage 5 -> output register: the accumulator truncated to OBITS.
// NT > 0: ACTVAL + #{i : acc >= T[i]}, pipelined as in codesign_thresholding.v:
//   6 NT registered compares per PE   7 .. 6 + clog2(NT) registered popcount tree of the
//   compare bits (codesign_adder_tree.v)   -> + ACTVAL into the output register.
// Latency: an input word accepted at cycle t reaches the output register at t + 6 (NT = 0) or
// t + 7 + clog2(NT) (NT > 0; clog2(1) = 0) when it completes a channel fold's sum; one word per
// cycle when not stalled.
module codesign_vvau #(
    parameter integer K = 9,
    parameter integer C = 4,
    parameter integer PE = 1,
    parameter integer SIMD = 1,
    parameter integer IBITS = 2,
    parameter integer WBITS = 2,
    parameter integer OBITS = 2,
    parameter integer ACCW = 8,
    parameter integer I_SIGNED = 0,
    parameter integer W_SIGNED = 1,
    parameter integer USE_DSP = 0,
    parameter integer NT = 0,
    parameter integer ACTVAL = 0,
    // derived (do not override)
    parameter integer KF = K / SIMD,
    parameter integer CF = C / PE,
    parameter integer WAW = (KF * CF > 1) ? $clog2(KF * CF) : 1,
    parameter integer TAW = (CF > 1) ? $clog2(CF) : 1,
    parameter integer NTW = (NT > 0) ? NT : 1
) (
    input  wire                      ap_clk,
    input  wire                      ap_rst_n,
    input  wire [SIMD*PE*IBITS-1:0]  in0_V_TDATA,
    input  wire                      in0_V_TVALID,
    output wire                      in0_V_TREADY,
    output reg  [PE*OBITS-1:0]       out_V_TDATA,
    output reg                       out_V_TVALID,
    input  wire                      out_V_TREADY,
    // weight ROM port: q valid one cycle after (addr, en); PE lanes of SIMD weights
    output wire [WAW-1:0]            wmem_addr,
    output wire                      wmem_en,
    input  wire [PE*SIMD*WBITS-1:0]  wmem_q,
    // threshold ROM port (unused when NT = 0)
    output wire [TAW-1:0]            tmem_addr,
    output wire                      tmem_en,
    input  wire [PE*NTW*ACCW-1:0]    tmem_q
);
    localparam integer KFW = (KF > 1) ? $clog2(KF) : 1;
    localparam integer CFW = (CF > 1) ? $clog2(CF) : 1;
    localparam integer EIW = IBITS + 1;
    localparam integer EWW = WBITS + 1;
    localparam integer PW = EIW + EWW;
    localparam integer VW = (OBITS > ACCW + 2) ? OBITS : ACCW + 2;

    wire adv = !out_V_TVALID || out_V_TREADY;
    wire fire = adv && in0_V_TVALID;
    assign in0_V_TREADY = adv;

    // ---------------- stage 0: issue ----------------
    reg [KFW-1:0] kf;
    reg [CFW-1:0] cf;
    reg [WAW-1:0] waddr;
    assign wmem_addr = waddr;
    assign wmem_en = adv;

    reg v1, v2, v3, v4, v5;
    reg first1, first2, first3, first4;
    reg last1, last2, last3, last4, last5;
    reg [CFW-1:0] cf1, cf2, cf3, cf4;
    reg [SIMD*PE*IBITS-1:0] x1;

    always @(posedge ap_clk) begin
        if (adv) x1 <= in0_V_TDATA;
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            kf <= 0; cf <= 0; waddr <= 0;
            v1 <= 1'b0; v2 <= 1'b0; v3 <= 1'b0; v4 <= 1'b0; v5 <= 1'b0;
            first1 <= 1'b0; first2 <= 1'b0; first3 <= 1'b0; first4 <= 1'b0;
            last1 <= 1'b0; last2 <= 1'b0; last3 <= 1'b0; last4 <= 1'b0; last5 <= 1'b0;
            cf1 <= 0; cf2 <= 0; cf3 <= 0; cf4 <= 0;
        end else if (adv) begin
            v1 <= fire; first1 <= (kf == 0); last1 <= (kf == KF - 1); cf1 <= cf;
            v2 <= v1; first2 <= first1; last2 <= last1; cf2 <= cf1;
            v3 <= v2; first3 <= first2; last3 <= last2; cf3 <= cf2;
            v4 <= v3; first4 <= first3; last4 <= last3; cf4 <= cf3;
            v5 <= v4 && last4; last5 <= last4;
            if (fire) begin
                if (cf == CF - 1) begin
                    cf <= 0;
                    kf <= (kf == KF - 1) ? {KFW{1'b0}} : kf + 1'b1;
                end else begin
                    cf <= cf + 1'b1;
                end
                waddr <= (waddr == KF * CF - 1) ? {WAW{1'b0}} : waddr + 1'b1;
            end
        end
    end

    // thresholds: read while the last kernel fold's dot moves from stage 3 to 4 (q valid in
    // stage 4, held by the ROM while stalled), registered into tq5 alongside the finished sum
    assign tmem_addr = cf3;
    assign tmem_en = adv && v3 && last3;
    reg [PE*NTW*ACCW-1:0] tq5;
    always @(posedge ap_clk) begin
        if (adv) tq5 <= tmem_q;
    end

    // valid per activation stage: va[0] = stage 5, va[AL] drives the output register
    localparam integer PL = (NT > 1) ? $clog2(NT) : 0;
    localparam integer CW = PL + 1;
    localparam integer AL = (NT > 0) ? 1 + PL : 0;
    wire [AL:0] va;
    assign va[0] = v5;
    genvar s;
    generate
        for (s = 1; s <= AL; s = s + 1) begin : g_va
            reg rv;
            always @(posedge ap_clk) begin
                if (!ap_rst_n) rv <= 1'b0;
                else if (adv) rv <= va[s-1];
            end
            assign va[s] = rv;
        end
    endgenerate

    // ---------------- element arithmetic ----------------
    function automatic signed [EIW-1:0] ext_i(input [IBITS-1:0] v);
        begin
            if (I_SIGNED != 0) ext_i = {v[IBITS-1], v};
            else ext_i = {1'b0, v};
        end
    endfunction

    function automatic signed [EWW-1:0] ext_w(input [WBITS-1:0] v);
        begin
            if (W_SIGNED != 0) ext_w = {v[WBITS-1], v};
            else ext_w = {1'b0, v};
        end
    endfunction

    // Shift-and-add signed multiply: keeps Yosys from mapping the product to a DSP (resType lut).
    function automatic signed [PW-1:0] mul_lut(input signed [EIW-1:0] a, input signed [EWW-1:0] b);
        integer i;
        reg signed [PW-1:0] ae, acc;
        begin
            ae = a;
            acc = 0;
            for (i = 0; i < EWW - 1; i = i + 1)
                if (b[i]) acc = acc + (ae <<< i);
            if (b[EWW-1]) acc = acc - (ae <<< (EWW - 1));
            mul_lut = acc;
        end
    endfunction

    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            // ---------------- stage 1 -> 2: products ----------------
            reg signed [PW-1:0] prod2 [0:SIMD-1];
            integer j;
            always @(posedge ap_clk) begin
                if (adv)
                    for (j = 0; j < SIMD; j = j + 1)
                        prod2[j] <= (USE_DSP != 0)
                            ? ext_i(x1[(j*PE + p)*IBITS +: IBITS]) * ext_w(wmem_q[(p*SIMD + j)*WBITS +: WBITS])
                            : mul_lut(ext_i(x1[(j*PE + p)*IBITS +: IBITS]), ext_w(wmem_q[(p*SIMD + j)*WBITS +: WBITS]));
            end

            // ---------------- stage 2 -> 3: adder tree over the SIMD kernel lanes ----------------
            reg signed [ACCW-1:0] dot;
            reg signed [ACCW-1:0] dot3;
            integer q;
            always @* begin
                dot = 0;
                for (q = 0; q < SIMD; q = q + 1) dot = dot + prod2[q];
            end
            always @(posedge ap_clk) begin
                if (adv) dot3 <= dot;
            end

            // ---------------- stage 3 -> 4 -> 5: accumulate per channel fold ----------------
            reg signed [ACCW-1:0] dot4;
            reg signed [ACCW-1:0] acc_mem [0:(1<<CFW)-1];
            reg signed [ACCW-1:0] sum5;
            wire signed [ACCW-1:0] sum4 = (first4 ? {ACCW{1'b0}} : acc_mem[cf4]) + dot4;
            always @(posedge ap_clk) begin
                if (adv) begin
                    dot4 <= dot3;
                    if (v4) acc_mem[cf4] <= sum4;
                    sum5 <= sum4;
                end
            end

            // ---------------- stage 5 -> output: activation ----------------
            if (NT == 0) begin : g_trunc
                wire signed [VW-1:0] value = sum5;
                always @(posedge ap_clk) begin
                    if (adv && va[AL]) out_V_TDATA[p*OBITS +: OBITS] <= value[OBITS-1:0];
                end
            end else begin : g_thr
                // stage 6: NT registered compares; then the registered popcount tree
                reg [NT-1:0] ge;
                integer i;
                always @(posedge ap_clk) begin
                    if (adv)
                        for (i = 0; i < NT; i = i + 1)
                            ge[i] <= (sum5 >= $signed(tq5[(p*NTW + i)*ACCW +: ACCW]));
                end
                wire [CW-1:0] cnt;
                codesign_adder_tree #(.N(NT), .IW(1), .OW(CW), .SIGNED(0)) u_pop (
                    .clk(ap_clk), .en(adv), .in(ge), .out(cnt));
                wire signed [VW-1:0] value = ACTVAL + $signed({1'b0, cnt});
                always @(posedge ap_clk) begin
                    if (adv && va[AL]) out_V_TDATA[p*OBITS +: OBITS] <= value[OBITS-1:0];
                end
            end
        end
    endgenerate

    always @(posedge ap_clk) begin
        if (!ap_rst_n) out_V_TVALID <= 1'b0;
        else if (adv) out_V_TVALID <= va[AL];
    end
endmodule
