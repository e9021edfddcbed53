// Matrix-Vector-Activation Unit (MVAU), PE x SIMD folded, behavioural Verilog.
//
// Why this shape: one stall-style pipeline (issue -> ROM read -> accumulate -> output register)
// in which every register advances only when the output register is empty or being consumed
// (adv). That single rule gives correct AXI-Stream backpressure at any cycle with no skid
// buffer, and the weight/threshold ROMs sit OUTSIDE the core (ports wmem_*/tmem_*) so the
// generated per-node wrapper can give each PE its own `$readmemh` ROM that Yosys infers as
// LUTRAM/BRAM (synchronous read, read enable = adv).
//
// Input vector of MW elements arrives as SF = MW/SIMD words into a ping-pong buffer and is
// replayed for the NF neuron folds (cycles per vector = NF*SF; the next vector loads meanwhile).
// Elements: unsigned, signed (two's complement) or bipolar (bit 0 -> -1, bit 1 -> +1).
// XNOR=1 (both bipolar): products are XNORs, the accumulator is a popcount p; thresholds must
// then be given in popcount units (T' = ceil((T+MW)/2), done by the generator) and
// noActivation emits 2p - MW so the output always equals x @ W.
// NT = 0: noActivation (emit the accumulator, truncated to OBITS). NT > 0: emit
// ACTVAL + #{i : acc >= T[i]} truncated to OBITS (bipolar outputs: ACTVAL = 0, code = count).
//
// Pipeline (timing: >= 100 MHz post-route on ECP5 at PE/SIMD 1..64): issue -> stage 1 (input
// buffer word, weight ROM word) -> stage 2 (both registered again in the core) -> one balanced
// adder tree per PE over the partial products with a register after every level -> accumulator
// -> [NT registered compares -> registered popcount tree] -> output register. Every register
// advances on adv, so backpressure stays exact at any depth (a stall freezes the whole pipe).
//
// Latency: DEPTH = 4 + RL + CBL + DSPL + TL + (NT > 0 ? 1 + clog2(NT) : 0) cycles from a step's issue to its
// result in the output register, where TL = clog2(SIMD * NPP) (0 if SIMD * NPP = 1), NPP = WBITS
// for LUT multiplies of non-bipolar operands, else 1, DSPL = 1 for USE_DSP (non-bipolar) and
// CBL = 1 with codebook storage, RL = WROM_LAT - 1 (1 when the weight ROM is banked: each bank
// registered twice; 2 when its bank select is a registered two-level mux, more than 4 banks).
// The last word of an input vector accepted at cycle t gives the first output word (fold 0) at
// t + 1 + DEPTH; the other folds follow every SF cycles. Throughput unchanged: NF*SF cycles per
// vector. Measured (rtlsim): SIMD 4 w4 NT 15 -> 14; SIMD 1 w2 no activation -> 6.
//
// Codebook weight storage (CB = 1): the weight ROM holds a KBITS-bit cluster index per weight
// (PE*SIMD*KBITS bits a word instead of PE*SIMD*WBITS) and CBOOK holds the 2^KBITS integer
// centroids as WBITS-bit codes (entry i at bits [i*WBITS, (i+1)*WBITS)). The index word is
// registered (wi2) and mapped through the centroid table into the registered weight word wq2:
// one more pipeline stage (CBL = 1), so the ROM output and the table lookup each drive only
// flip-flops. Everything after wq2 is the plain datapath, so the result is the same integer
// matmul.
//
// Weights as constants (EXTDOT = 1, fully unfolded layers): the generated per-node wrapper holds
// the dot products as constant shift-add logic (only the non-zero weights, one shared product
// per input and distinct weight magnitude, registered trees; EXTL stages from dot_x to dot_q)
// and the core takes its per-PE dot products from dot_q instead of the weight ROM and the
// partial-product trees: DL = 1 + EXTL.
module codesign_mvau #(
    parameter integer MW = 4,
    parameter integer MH = 4,
    parameter integer PE = 1,
    parameter integer SIMD = 1,
    parameter integer IBITS = 1,
    parameter integer WBITS = 1,
    parameter integer OBITS = 1,
    parameter integer ACCW = 8,
    parameter integer I_SIGNED = 0,
    parameter integer I_BIPOLAR = 0,
    parameter integer W_SIGNED = 1,
    parameter integer W_BIPOLAR = 0,
    parameter integer XNOR = 0,
    parameter integer USE_DSP = 0,
    parameter integer NT = 0,
    parameter integer ACTVAL = 0,
    // weight ROM read latency: 1 (q one cycle after addr/en), 2 when the wrapper registers the
    // ROM output twice (a block-RAM ROM split in depth: the read mux after a flip-flop), 3 when
    // the bank select is itself pipelined (groups of 4 banks, a register, then the group select)
    parameter integer WROM_LAT = 1,
    parameter integer CB = 0,
    parameter integer KBITS = 1,
    parameter [((1 << KBITS) * WBITS)-1:0] CBOOK = 0,
    parameter integer EXTDOT = 0,
    parameter integer EXTL = 1,
    // derived (do not override)
    parameter integer SF = MW / SIMD,
    parameter integer NF = MH / PE,
    parameter integer WAW = (NF * SF > 1) ? $clog2(NF * SF) : 1,
    parameter integer TAW = (NF > 1) ? $clog2(NF) : 1,
    parameter integer NTW = (NT > 0) ? NT : 1,
    parameter integer WQB = (CB != 0) ? KBITS : WBITS
) (
    input  wire                      ap_clk,
    input  wire                      ap_rst_n,
    input  wire [SIMD*IBITS-1:0]     in0_V_TDATA,
    input  wire                      in0_V_TVALID,
    output wire                      in0_V_TREADY,
    output reg  [PE*OBITS-1:0]       out_V_TDATA,
    output reg                       out_V_TVALID,
    input  wire                      out_V_TREADY,
    // weight ROM port: q is valid WROM_LAT cycles after (addr, en)
    output wire [WAW-1:0]            wmem_addr,
    output wire                      wmem_en,
    input  wire [PE*SIMD*WQB-1:0]    wmem_q,
    // threshold ROM port (unused when NT = 0): PE x NT thresholds of ACCW bits
    output wire [TAW-1:0]            tmem_addr,
    output wire                      tmem_en,
    input  wire [PE*NTW*ACCW-1:0]    tmem_q,
    // external constant-weight dot products (EXTDOT = 1): dot_q is dot_x . W, EXTL cycles later
    output wire [SIMD*IBITS-1:0]     dot_x,
    output wire                      dot_en,
    input  wire [PE*ACCW-1:0]        dot_q
);
    localparam integer SFW = (SF > 1) ? $clog2(SF) : 1;
    localparam integer NFW = (NF > 1) ? $clog2(NF) : 1;
    localparam integer EIW = IBITS + 1;  // signed width of an extended input element
    localparam integer EWW = WBITS + 1;  // signed width of an extended weight element
    localparam integer VW = (OBITS > ACCW + 2) ? OBITS : ACCW + 2;  // activation value width

    // ---------------- input side: ping-pong vector buffer ----------------
    // The writer fills buffer wsel while the reader works on buffer rsel, so the next vector
    // streams in during neuron folds 1..NF-1 of the current one (no stall of the producer).
    // On fold 0 the reader may also consume words of the buffer still being filled (widx > sf),
    // so a vector is processed as it arrives.
    // no_rw_check: the reader never reads the word being written (the other buffer, or on fold 0
    // only words below widx), so Yosys need not build a read-during-write bypass on the buffer's
    // output (in block RAM it sat between the RAM and the next register)
    (* no_rw_check *)
    reg [SIMD*IBITS-1:0] ibuf [0:2*(1<<SFW)-1];  // address {buffer, word}
    reg [SFW-1:0] widx;
    reg wsel, rsel;
    reg [1:0] full;
    wire w_fire = !full[wsel] && in0_V_TVALID;
    assign in0_V_TREADY = !full[wsel];

    // ---------------- stage 0: issue ----------------
    reg [SFW-1:0] sf;
    reg [NFW-1:0] nf;
    reg [WAW-1:0] waddr;
    wire adv = !out_V_TVALID || out_V_TREADY;
    wire avail = full[rsel] || ((nf == 0) && (wsel == rsel) && (widx > sf));
    wire fire = adv && avail;
    wire vec_done = fire && (sf == SF - 1) && (nf == NF - 1);
    assign wmem_addr = waddr;
    assign wmem_en = adv;
    reg [NFW-1:0] nf1;
    reg v1, first1, last1;

    reg [SIMD*IBITS-1:0] x1;

    always @(posedge ap_clk) begin
        if (w_fire) ibuf[{wsel, widx}] <= in0_V_TDATA;
        if (adv) x1 <= ibuf[{rsel, sf}];
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            widx <= 0; wsel <= 1'b0; rsel <= 1'b0; full <= 2'b00;
            sf <= 0; nf <= 0; nf1 <= 0; waddr <= 0;
            v1 <= 1'b0; first1 <= 1'b0; last1 <= 1'b0;
        end else begin
            if (w_fire) begin
                if (widx == SF - 1) begin
                    widx <= 0;
                    wsel <= ~wsel;
                end else begin
                    widx <= widx + 1'b1;
                end
            end
            full[0] <= (full[0] && !(vec_done && rsel == 1'b0)) || (w_fire && widx == SF - 1 && wsel == 1'b0);
            full[1] <= (full[1] && !(vec_done && rsel == 1'b1)) || (w_fire && widx == SF - 1 && wsel == 1'b1);
            if (vec_done) rsel <= ~rsel;
            if (adv) begin
                v1 <= fire;
                nf1 <= nf;
                first1 <= (sf == 0);
                last1 <= (sf == SF - 1);
                if (fire) begin
                    if (sf == SF - 1) begin
                        sf <= 0;
                        nf <= (nf == NF - 1) ? {NFW{1'b0}} : nf + 1'b1;
                    end else begin
                        sf <= sf + 1'b1;
                    end
                    waddr <= (waddr == NF * SF - 1) ? {WAW{1'b0}} : waddr + 1'b1;
                end
            end
        end
    end

    // ---------------- element arithmetic ----------------
    function automatic signed [EIW-1:0] ext_i(input [IBITS-1:0] v);
        begin
            if (I_BIPOLAR != 0) ext_i = v[0] ? 1 : -1;
            else if (I_SIGNED != 0) ext_i = {v[IBITS-1], v};
            else ext_i = {1'b0, v};
        end
    endfunction

    function automatic signed [EWW-1:0] ext_w(input [WBITS-1:0] v);
        begin
            if (W_BIPOLAR != 0) ext_w = v[0] ? 1 : -1;
            else if (W_SIGNED != 0) ext_w = {v[WBITS-1], v};
            else ext_w = {1'b0, v};
        end
    endfunction

    // ---------------- stage 1 -> acc: registered dot product ----------------
    // Every product is split into leaves of ONE balanced adder tree per PE with a register after
    // every level, so the longest combinational path is one leaf (AND / negate) plus one adder:
    //   LUT multiply: leaf (k, j) = x_k * w_k[j] * 2^j (the sign bit of a signed weight negated),
    //                 SIMD*WBITS leaves (shift-and-add, never a DSP: resType lut);
    //   bipolar weights or inputs: leaf k = +-(other operand), SIMD leaves;
    //   XNOR: leaf k = xnor bit, SIMD leaves (the tree is a popcount);
    //   USE_DSP: leaf k = registered x_k * w_k (Yosys maps the registered multiply to a DSP).
    localparam integer NPP = (XNOR != 0 || W_BIPOLAR != 0 || I_BIPOLAR != 0 || USE_DSP != 0) ? 1 : WBITS;
    localparam integer NLEAF = SIMD * NPP;
    localparam integer PW = (XNOR != 0) ? 1 : EIW + EWW;        // leaf width (XNOR leaves unsigned)
    localparam integer TL = (NLEAF > 1) ? $clog2(NLEAF) : 0;    // registered tree levels
    localparam integer TOW0 = PW + TL;
    localparam integer TOW = (TOW0 < ACCW) ? TOW0 : ACCW;       // mod 2^ACCW arithmetic is exact
    localparam integer DSPL = (USE_DSP != 0 && XNOR == 0 && W_BIPOLAR == 0 && I_BIPOLAR == 0) ? 1 : 0;
    // stage 1 -> stage 2: x1 and the weight ROM word are registered once more in the core, so
    // a block-RAM output (slow clock-to-out on ECP5 / Xilinx without its output register)
    // drives only a flip-flop
    localparam integer CBL = (CB != 0) ? 1 : 0;                // codebook lookup stage
    localparam integer RL = WROM_LAT - 1;                       // extra ROM stage: x1 waits for it
    // stages between stage 1 and the accumulator
    localparam integer DL = (EXTDOT != 0) ? 1 + EXTL : 1 + RL + CBL + DSPL + TL;
    localparam integer PL = (NT > 1) ? $clog2(NT) : 0;          // popcount tree levels
    // cycles from a step's issue (fire) to its result in the output register
    localparam integer DEPTH = 3 + DL + ((NT > 0) ? 1 + PL : 0);

    // valid / first / last / fold index of the step in each stage between 1 and the accumulator
    wire [DL:0] vd, fd, ld;
    wire [(DL+1)*NFW-1:0] nfd;
    assign vd[0] = v1;
    assign fd[0] = first1;
    assign ld[0] = last1;
    assign nfd[0 +: NFW] = nf1;
    genvar s;
    generate
        for (s = 1; s <= DL; s = s + 1) begin : g_dly
            reg rv, rf, rl;
            reg [NFW-1:0] rn;
            always @(posedge ap_clk) begin
                if (!ap_rst_n) rv <= 1'b0;
                else if (adv) rv <= vd[s-1];
                if (adv) begin
                    rf <= fd[s-1]; rl <= ld[s-1]; rn <= nfd[(s-1)*NFW +: NFW];
                end
            end
            assign vd[s] = rv;
            assign fd[s] = rf;
            assign ld[s] = rl;
            assign nfd[s*NFW +: NFW] = rn;
        end
    endgenerate
    wire [NFW-1:0] nf_a = nfd[DL*NFW +: NFW];
    // thresholds are read one stage before the fold's last step enters the accumulator; the ROM
    // word is registered in the core (tq2) when the step enters the accumulator, so tq2 holds
    // exactly the fold's thresholds while the finished accumulator is compared, and the ROM
    // output again drives only flip-flops
    assign tmem_addr = nfd[(DL-1)*NFW +: NFW];
    assign tmem_en = adv && vd[DL-1] && ld[DL-1];
    reg [PE*NTW*ACCW-1:0] tq2;
    reg [SIMD*IBITS-1:0] x2;
    reg [PE*SIMD*WBITS-1:0] wq2;
    assign dot_x = x2;
    assign dot_en = adv;
    wire [SIMD*IBITS-1:0] x1w;  // x1, delayed by the ROM's extra stages when there are any
    if (RL > 0) begin : g_x1r
        reg [RL*SIMD*IBITS-1:0] x1r;  // RL words, the newest in the low bits
        always @(posedge ap_clk) if (adv) x1r <= (x1r << (SIMD*IBITS)) | x1;
        assign x1w = x1r[(RL-1)*SIMD*IBITS +: SIMD*IBITS];
    end else begin : g_x1
        assign x1w = x1;
    end
    always @(posedge ap_clk) begin
        if (adv) begin
            if (NT > 0) tq2 <= tmem_q;
        end
    end
    genvar c;
    generate
        if (CB != 0) begin : g_cb
            // codebook: index word registered, then looked up into wq2 (x waits one stage)
            reg [PE*SIMD*KBITS-1:0] wi2;
            reg [SIMD*IBITS-1:0] x1c;
            always @(posedge ap_clk) begin
                if (adv) begin
                    wi2 <= wmem_q;
                    x1c <= x1w;
                    x2 <= x1c;
                end
            end
            for (c = 0; c < PE * SIMD; c = c + 1) begin : g_lk
                wire [KBITS-1:0] idx = wi2[c*KBITS +: KBITS];
                always @(posedge ap_clk) if (adv) wq2[c*WBITS +: WBITS] <= CBOOK[idx*WBITS +: WBITS];
            end
        end else begin : g_plain
            always @(posedge ap_clk) begin
                if (adv) begin
                    x2 <= x1w;
                    wq2 <= wmem_q;
                end
            end
        end
    endgenerate

    reg done_a;  // the accumulator holds a finished fold
    always @(posedge ap_clk) begin
        if (!ap_rst_n) done_a <= 1'b0;
        else if (adv) done_a <= vd[DL] && ld[DL];
    end

    // valid of the activation stages: vdo[0] = accumulator finished, then compare, popcount levels
    localparam integer AL = (NT > 0) ? 1 + PL : 0;
    wire [AL:0] vdo;
    assign vdo[0] = done_a;
    generate
        for (s = 1; s <= AL; s = s + 1) begin : g_vdo
            reg rv;
            always @(posedge ap_clk) begin
                if (!ap_rst_n) rv <= 1'b0;
                else if (adv) rv <= vdo[s-1];
            end
            assign vdo[s] = rv;
        end
    endgenerate

    genvar p, k, j;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire [NLEAF*PW-1:0] leaves;
            for (k = 0; k < SIMD; k = k + 1) begin : g_el
                wire [IBITS-1:0] xv = x2[k*IBITS +: IBITS];
                wire [WBITS-1:0] wv = wq2[(p*SIMD + k)*WBITS +: WBITS];
                wire signed [EIW-1:0] xe = ext_i(xv);
                wire signed [EWW-1:0] we = ext_w(wv);
                if (XNOR != 0) begin : g_xnor
                    assign leaves[k] = ~(xv[0] ^ wv[0]);
                end else if (W_BIPOLAR != 0) begin : g_wbip
                    wire signed [PW-1:0] xs = xe;
                    assign leaves[k*PW +: PW] = wv[0] ? xs : -xs;
                end else if (I_BIPOLAR != 0) begin : g_ibip
                    wire signed [PW-1:0] ws = we;
                    assign leaves[k*PW +: PW] = xv[0] ? ws : -ws;
                end else if (USE_DSP != 0) begin : g_dsp
                    reg signed [PW-1:0] prod;
                    always @(posedge ap_clk) if (adv) prod <= xe * we;
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
            wire signed [ACCW-1:0] dot;
            if (EXTDOT != 0) begin : g_ext
                assign dot_t = {TOW{1'b0}};
                assign dot = dot_q[p*ACCW +: ACCW];
            end else begin : g_tree
            codesign_mvau_tree #(.N(NLEAF), .IW(PW), .OW(TOW), .SIGNED((XNOR != 0) ? 0 : 1)) u_tree (
                .clk(ap_clk), .en(adv), .in(leaves), .out(dot_t));
            if (XNOR != 0 || TOW >= ACCW) begin : g_dz
                assign dot = dot_t;  // zero-extends (XNOR) or keeps ACCW bits
            end else begin : g_ds
                assign dot = {{(ACCW-TOW){dot_t[TOW-1]}}, dot_t};
            end
            end

            reg signed [ACCW-1:0] acc;
            always @(posedge ap_clk) begin
                if (adv && vd[DL]) acc <= (fd[DL] ? {ACCW{1'b0}} : acc) + dot;
            end

            // ---------------- acc -> output: activation ----------------
            if (NT == 0) begin : g_noact
                reg signed [VW-1:0] value;
                always @* begin
                    if (XNOR != 0) value = 2 * acc - MW;
                    else value = acc;
                end
                always @(posedge ap_clk) begin
                    if (adv && done_a) out_V_TDATA[p*OBITS +: OBITS] <= value[OBITS-1:0];
                end
            end else begin : g_act
                // NT registered compares, then a registered popcount tree of the compare bits
                // (correct for any threshold order; II = 1), then + ACTVAL into the output register
                reg [NT-1:0] ge;
                integer i;
                always @(posedge ap_clk) begin
                    if (adv)
                        for (i = 0; i < NT; i = i + 1)
                            ge[i] <= (acc >= $signed(tq2[(p*NTW + i)*ACCW +: ACCW]));
                end
                localparam integer CW = PL + 1;
                wire [CW-1:0] cnt;
                codesign_mvau_tree #(.N(NT), .IW(1), .OW(CW), .SIGNED(0)) u_pop (
                    .clk(ap_clk), .en(adv), .in(ge), .out(cnt));
                wire signed [VW-1:0] value = ACTVAL + $signed({1'b0, cnt});
                always @(posedge ap_clk) begin
                    if (adv && vdo[AL]) out_V_TDATA[p*OBITS +: OBITS] <= value[OBITS-1:0];
                end
            end
        end
    endgenerate

    always @(posedge ap_clk) begin
        if (!ap_rst_n) out_V_TVALID <= 1'b0;
        else if (adv) out_V_TVALID <= vdo[AL];
    end
endmodule

// Balanced binary adder tree, N inputs of IW bits -> OW bits, a register after every level
// (latency clog2(N) cycles; N = 1: a wire). Heap layout: node i = node 2i + node 2i+1, leaves
// at NP..NP+N-1 (NP = next power of two >= N), missing leaves are zero.
module codesign_mvau_tree #(
    parameter integer N = 2,
    parameter integer IW = 4,
    parameter integer OW = 6,
    parameter integer SIGNED = 1
) (
    input  wire            clk,
    input  wire            en,
    input  wire [N*IW-1:0] in,
    output wire [OW-1:0]   out
);
    localparam integer NP = (N > 1) ? (1 << $clog2(N)) : 1;
    wire [2*NP*OW-1:0] node;
    genvar i;
    generate
        for (i = NP; i < 2 * NP; i = i + 1) begin : g_leaf
            if (i - NP < N) begin : g_in
                wire [IW-1:0] v = in[(i-NP)*IW +: IW];
                if (OW > IW) begin : g_ext
                    assign node[i*OW +: OW] = {{(OW-IW){(SIGNED != 0) ? v[IW-1] : 1'b0}}, v};
                end else begin : g_trunc
                    assign node[i*OW +: OW] = v[OW-1:0];
                end
            end else begin : g_zero
                assign node[i*OW +: OW] = {OW{1'b0}};
            end
        end
        for (i = 1; i < NP; i = i + 1) begin : g_add
            reg [OW-1:0] r;
            always @(posedge clk) if (en) r <= node[2*i*OW +: OW] + node[(2*i+1)*OW +: OW];
            assign node[i*OW +: OW] = r;
        end
    endgenerate
    assign node[0 +: OW] = {OW{1'b0}};
    assign out = node[OW +: OW];
endmodule
