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
    // derived (do not override)
    parameter integer SF = MW / SIMD,
    parameter integer NF = MH / PE,
    parameter integer WAW = (NF * SF > 1) ? $clog2(NF * SF) : 1,
    parameter integer TAW = (NF > 1) ? $clog2(NF) : 1,
    parameter integer NTW = (NT > 0) ? NT : 1
) (
    input  wire                      ap_clk,
    input  wire                      ap_rst_n,
    input  wire [SIMD*IBITS-1:0]     in0_V_TDATA,
    input  wire                      in0_V_TVALID,
    output wire                      in0_V_TREADY,
    output reg  [PE*OBITS-1:0]       out_V_TDATA,
    output reg                       out_V_TVALID,
    input  wire                      out_V_TREADY,
    // weight ROM port: q is valid one cycle after (addr, en)
    output wire [WAW-1:0]            wmem_addr,
    output wire                      wmem_en,
    input  wire [PE*SIMD*WBITS-1:0]  wmem_q,
    // threshold ROM port (unused when NT = 0): PE x NT thresholds of ACCW bits
    output wire [TAW-1:0]            tmem_addr,
    output wire                      tmem_en,
    input  wire [PE*NTW*ACCW-1:0]    tmem_q
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
    // thresholds are read from stage 1 (address = fold of the step in stage 1, only on a fold's
    // last step), so the ROM output register holds them exactly while the finished accumulator
    // sits in stage 2: no extra copy of PE*NT thresholds in flip-flops
    reg [NFW-1:0] nf1;
    reg v1, first1, last1;
    assign tmem_addr = nf1;
    assign tmem_en = adv && v1 && last1;

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

    // Shift-and-add signed multiply: keeps Yosys from mapping the product to a DSP (resType lut).
    function automatic signed [EIW+EWW-1:0] mul_lut(input signed [EIW-1:0] a, input signed [EWW-1:0] b);
        integer i;
        reg signed [EIW+EWW-1:0] ae, acc;
        begin
            ae = a;  // sign-extended
            acc = 0;
            for (i = 0; i < EWW - 1; i = i + 1)
                if (b[i]) acc = acc + (ae <<< i);
            if (b[EWW-1]) acc = acc - (ae <<< (EWW - 1));
            mul_lut = acc;
        end
    endfunction

    function automatic signed [EIW+EWW-1:0] prod(input [IBITS-1:0] xv, input [WBITS-1:0] wv);
        reg signed [EIW+EWW-1:0] xe, we;
        begin
            xe = ext_i(xv);
            we = ext_w(wv);
            if (W_BIPOLAR != 0) prod = wv[0] ? xe : -xe;
            else if (I_BIPOLAR != 0) prod = xv[0] ? we : -we;
            else if (USE_DSP != 0) prod = xe * we;
            else prod = mul_lut(ext_i(xv), ext_w(wv));
        end
    endfunction

    // ---------------- stage 1 -> 2: dot products and accumulation ----------------
    reg done2;
    always @(posedge ap_clk) begin
        if (!ap_rst_n) done2 <= 1'b0;
        else if (adv) done2 <= v1 && last1;
    end

    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            reg signed [ACCW-1:0] dot;
            reg signed [ACCW-1:0] acc;
            integer k;
            always @* begin
                dot = 0;
                for (k = 0; k < SIMD; k = k + 1) begin
                    if (XNOR != 0)
                        dot = dot + {{(ACCW-1){1'b0}}, ~(x1[k] ^ wmem_q[(p*SIMD + k)*WBITS])};
                    else
                        dot = dot + prod(x1[k*IBITS +: IBITS], wmem_q[(p*SIMD + k)*WBITS +: WBITS]);
                end
            end
            always @(posedge ap_clk) begin
                if (adv && v1) acc <= (first1 ? {ACCW{1'b0}} : acc) + dot;
            end

            // ---------------- stage 2 -> output: activation ----------------
            reg signed [VW-1:0] value;
            integer i;
            always @* begin
                if (NT == 0) begin
                    if (XNOR != 0) value = 2 * acc - MW;
                    else value = acc;
                end else begin
                    value = ACTVAL;
                    for (i = 0; i < NT; i = i + 1)
                        if (acc >= $signed(tmem_q[(p*NTW + i)*ACCW +: ACCW])) value = value + 1;
                end
            end
            always @(posedge ap_clk) begin
                if (adv && done2) out_V_TDATA[p*OBITS +: OBITS] <= value[OBITS-1:0];
            end
        end
    endgenerate

    always @(posedge ap_clk) begin
        if (!ap_rst_n) out_V_TVALID <= 1'b0;
        else if (adv) out_V_TVALID <= done2;
    end
endmodule
