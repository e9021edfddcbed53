// Vector-Vector-Activation Unit (VVAU): depthwise convolution, PE x SIMD folded, behavioural Verilog.
//
// Input stream: the sliding window's output in its own order, (kh, kw, c) with c innermost, cut
// into words of SIMD*PE elements (element e of a word = kernel lane e / PE, channel lane e % PE).
// SIMD = 1: a word is PE channels at one kernel position; SIMD > 1 needs PE = C (a word is SIMD
// whole kernel positions). Per window: KF = K/SIMD kernel folds x CF = C/PE channel folds words,
// in the order kf outer, cf inner, so the PE*CF channel accumulators live in a small RAM
// (acc_mem, one entry per channel fold; a plain register when CF = 1) that is read, added and
// written back in one stage.
// One output word (PE channels) leaves per channel fold, after the last kernel fold.
//
// Why this shape: the same stall-style pipeline as codesign_mvau.v (every register advances only
// when the output register is empty or being consumed: adv), so AXI-Stream backpressure is
// correct at any cycle without a skid buffer; a deeper pipeline only adds valid bits. Every
// stage is registered (timing: >= 100 MHz post-route on ECP5, as the matrix unit):
//   0 issue (counters; weight ROM address)   1 x1 + weight ROM q
//   2 x1 and the ROM word registered once more (x2, wq2: a block-RAM output drives only
//     flip-flops)   [+1 USE_DSP: the registered multiply, one leaf per kernel lane]
//   TL levels of one balanced adder tree per PE over the SIMD*NPP partial products
//     (codesign_adder_tree.v; NPP = WBITS shift-and-add leaves per LUT multiply, 1 with DSPs;
//     TL = clog2(SIMD*NPP)), a register after every level
//   a: the dot product registered (dotr) with its channel fold's control; threshold ROM q
//   s: accumulate (acc_mem read-modify-write) into the finished sum (sum_s) and the threshold
//     word registered once more (tq_s)
// NT = 0: stage s -> output register: the accumulator truncated to OBITS.
// NT > 0: ACTVAL + #{i : acc >= T[i]}, pipelined as in codesign_thresholding.v: NT registered
//   compares per PE, clog2(NT) levels of a registered popcount tree of the compare bits
//   (codesign_adder_tree.v) -> + ACTVAL into the output register.
// Weight ROM address: one register per PE (wmem_addr[p*WAW +: WAW] addresses PE p's ROM), all
// loaded from one next-address value, each in its own (* keep *) always block. Why: the ROM is
// KF*CF words deep, often only a few, so with one shared address every ROM output bit is one of
// at most 2^(KF*CF) functions of it and synthesis merges the PE*SIMD*WBITS read registers (and
// wq2 after them) into a handful of flip-flops, each driving thousands of loads (80.7 MHz on ECP5
// at PE = 64, KF*CF = 3). Distinct address registers keep the read registers distinct.
// The threshold ROM (CF words) keeps one address: at CF = 1 its word is a constant; a CF of 2..4
// at a high PE would merge the same way (not replicated yet).
// Latency: an input word accepted at cycle t reaches the output register at t + DEPTH when it
// completes a channel fold's sum, DEPTH = 5 + DSPL + TL + (NT > 0 ? 1 + clog2(NT) : 0)
// (DSPL = USE_DSP; clog2(1) = 0); one word per cycle when not stalled.
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
    // weight ROM port: q valid one cycle after (addr, en); PE lanes of SIMD weights. The
    // address is PE copies of one value, copy p for PE p's ROM (wmem_addr[p*WAW +: WAW])
    output wire [PE*WAW-1:0]         wmem_addr,
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
    localparam integer PW = EIW + EWW;                          // leaf (product) width
    localparam integer VW = (OBITS > ACCW + 2) ? OBITS : ACCW + 2;
    localparam integer NPP = (USE_DSP != 0) ? 1 : WBITS;       // leaves per kernel lane
    localparam integer NLEAF = SIMD * NPP;
    localparam integer TL = (NLEAF > 1) ? $clog2(NLEAF) : 0;    // registered tree levels
    localparam integer TOW0 = PW + TL;
    localparam integer TOW = (TOW0 < ACCW) ? TOW0 : ACCW;       // mod 2^ACCW arithmetic is exact
    localparam integer DSPL = (USE_DSP != 0) ? 1 : 0;
    // stages after stage 1 up to the dot register (stage a): x2, [product], tree levels, dotr
    localparam integer DL = 2 + DSPL + TL;

    wire adv = !out_V_TVALID || out_V_TREADY;
    wire fire = adv && in0_V_TVALID;
    assign in0_V_TREADY = adv;

    // ---------------- stage 0: issue ----------------
    reg [KFW-1:0] kf;
    reg [CFW-1:0] cf;
    // the weight ROM address: one next value (the counter's increment and compare exist once),
    // loaded into one register per PE, each in its own (* keep *) always block so that synthesis
    // keeps the copies apart (a shallow ROM's outputs would otherwise merge: see the header);
    // copy 0 is the counter's state
    wire [WAW-1:0] waddr = wmem_addr[0 +: WAW];
    wire [WAW-1:0] waddr_nx = (waddr == KF * CF - 1) ? {WAW{1'b0}} : waddr + 1'b1;
    assign wmem_en = adv;
    genvar wa;
    generate
        for (wa = 0; wa < PE; wa = wa + 1) begin : g_waddr
            reg [WAW-1:0] r;
            (* keep *)
            always @(posedge ap_clk) begin
                if (!ap_rst_n) r <= {WAW{1'b0}};
                else if (fire) r <= waddr_nx;
            end
            assign wmem_addr[wa*WAW +: WAW] = r;
        end
    endgenerate

    reg v1, first1, last1;
    reg [CFW-1:0] cf1;
    reg [SIMD*PE*IBITS-1:0] x1;

    always @(posedge ap_clk) begin
        if (adv) begin
            x1 <= in0_V_TDATA;
            first1 <= (kf == 0); last1 <= (kf == KF - 1); cf1 <= cf;
        end
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            kf <= 0; cf <= 0;
            v1 <= 1'b0;
        end else if (adv) begin
            v1 <= fire;
            if (fire) begin
                if (cf == CF - 1) begin
                    cf <= 0;
                    kf <= (kf == KF - 1) ? {KFW{1'b0}} : kf + 1'b1;
                end else begin
                    cf <= cf + 1'b1;
                end
            end
        end
    end

    // valid / first / last / channel fold of the word in each stage from 1 (index 0) to a (DL)
    wire [DL:0] vd, fd, ld;
    wire [(DL+1)*CFW-1:0] cfd;
    assign vd[0] = v1;
    assign fd[0] = first1;
    assign ld[0] = last1;
    assign cfd[0 +: CFW] = cf1;
    genvar s;
    generate
        for (s = 1; s <= DL; s = s + 1) begin : g_dly
            reg rv, rf, rl;
            reg [CFW-1:0] rc;
            always @(posedge ap_clk) begin
                if (!ap_rst_n) rv <= 1'b0;
                else if (adv) rv <= vd[s-1];
                if (adv) begin
                    rf <= fd[s-1]; rl <= ld[s-1]; rc <= cfd[(s-1)*CFW +: CFW];
                end
            end
            assign vd[s] = rv;
            assign fd[s] = rf;
            assign ld[s] = rl;
            assign cfd[s*CFW +: CFW] = rc;
        end
    endgenerate
    wire v_a = vd[DL];
    wire first_a = fd[DL];
    wire last_a = ld[DL];
    wire [CFW-1:0] cf_a = cfd[DL*CFW +: CFW];

    // stage 2: the input word and the weight ROM word registered once more
    reg [SIMD*PE*IBITS-1:0] x2;
    reg [PE*SIMD*WBITS-1:0] wq2;
    always @(posedge ap_clk) begin
        if (adv) begin
            x2 <= x1;
            wq2 <= wmem_q;
        end
    end

    // thresholds: read while the channel fold's last word moves into stage a (q valid in stage
    // a, held by the ROM while stalled), registered into tq_s alongside the finished sum
    assign tmem_addr = cfd[(DL-1)*CFW +: CFW];
    assign tmem_en = adv && vd[DL-1] && ld[DL-1];
    reg [PE*NTW*ACCW-1:0] tq_s;
    reg v_s;
    always @(posedge ap_clk) begin
        if (adv) tq_s <= tmem_q;
        if (!ap_rst_n) v_s <= 1'b0;
        else if (adv) v_s <= v_a && last_a;
    end

    // valid per activation stage: va[0] = stage s, va[AL] drives the output register
    localparam integer PL = (NT > 1) ? $clog2(NT) : 0;
    localparam integer CW = PL + 1;
    localparam integer AL = (NT > 0) ? 1 + PL : 0;
    wire [AL:0] va;
    assign va[0] = v_s;
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

    genvar p, k, j;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            // ---------------- stage 2 -> a: products as leaves of one registered tree ----------------
            // LUT multiply: leaf (k, j) = x_k * w_k[j] * 2^j (the sign bit of a signed weight
            // negated), shift-and-add that Yosys never maps to a DSP (resType lut); USE_DSP: leaf
            // k = the registered product x_k * w_k (a DSP multiply). Longest combinational path:
            // one leaf plus one adder.
            wire [NLEAF*PW-1:0] leaves;
            for (k = 0; k < SIMD; k = k + 1) begin : g_el
                wire signed [EIW-1:0] xe = ext_i(x2[(k*PE + p)*IBITS +: IBITS]);
                wire [WBITS-1:0] wv = wq2[(p*SIMD + k)*WBITS +: WBITS];
                if (USE_DSP != 0) begin : g_dsp
                    reg signed [PW-1:0] prod;
                    always @(posedge ap_clk) if (adv) prod <= xe * ext_w(wv);
                    assign leaves[k*PW +: PW] = prod;
                end else begin : g_lut
                    wire signed [PW-1:0] xs = xe;
                    for (j = 0; j < WBITS; j = j + 1) begin : g_pp
                        wire signed [PW-1:0] sh = xs <<< j;
                        if (W_SIGNED != 0 && j == WBITS - 1) begin : g_neg
                            assign leaves[(k*NPP + j)*PW +: PW] = wv[j] ? -sh : {PW{1'b0}};
                        end else begin : g_pos
                            assign leaves[(k*NPP + j)*PW +: PW] = wv[j] ? sh : {PW{1'b0}};
                        end
                    end
                end
            end
            wire [TOW-1:0] dot_t;
            codesign_adder_tree #(.N(NLEAF), .IW(PW), .OW(TOW), .SIGNED(1)) u_tree (
                .clk(ap_clk), .en(adv), .in(leaves), .out(dot_t));
            reg signed [ACCW-1:0] dotr;
            always @(posedge ap_clk) begin
                if (adv) dotr <= $signed(dot_t);
            end

            // ---------------- stage a -> s: accumulate per channel fold ----------------
            reg signed [ACCW-1:0] sum_s;
            wire signed [ACCW-1:0] acc_q;  // this channel fold's partial sum
            wire signed [ACCW-1:0] sum_a = (first_a ? {ACCW{1'b0}} : acc_q) + dotr;
            if (CF == 1) begin : g_acc_reg
                // one channel fold: the accumulator is a register. Why not acc_mem (two words at CFW = 1,
                // one used): the ECP5 flow maps it to LUT RAM, whose shared (constant) read address
                // then drives every PE's RAMs (the critical path of the PE = 64 unit at 94.65 MHz)
                reg signed [ACCW-1:0] acc_r;
                assign acc_q = acc_r;
                always @(posedge ap_clk) begin
                    if (adv && v_a) acc_r <= sum_a;
                end
            end else begin : g_acc_mem
                reg signed [ACCW-1:0] acc_mem [0:(1<<CFW)-1];
                assign acc_q = acc_mem[cf_a];
                always @(posedge ap_clk) begin
                    if (adv && v_a) acc_mem[cf_a] <= sum_a;
                end
            end
            always @(posedge ap_clk) begin
                if (adv) sum_s <= sum_a;
            end

            // ---------------- stage s -> output: activation ----------------
            if (NT == 0) begin : g_trunc
                wire signed [VW-1:0] value = sum_s;
                always @(posedge ap_clk) begin
                    if (adv && va[AL]) out_V_TDATA[p*OBITS +: OBITS] <= value[OBITS-1:0];
                end
            end else begin : g_thr
                // NT registered compares; then the registered popcount tree
                reg [NT-1:0] ge;
                integer i;
                always @(posedge ap_clk) begin
                    if (adv)
                        for (i = 0; i < NT; i = i + 1)
                            ge[i] <= (sum_s >= $signed(tq_s[(p*NTW + i)*ACCW +: ACCW]));
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
