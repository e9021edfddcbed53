// Channel-wise multi-threshold (standalone Thresholding op), PE channels per word.
//
// out = ACTVAL + #{i : x >= T[c, i]} per element, truncated to OBITS. Thresholds for channel
// fold cf come from the per-PE ROMs outside the module (tmem_*), read synchronously so the
// ROM can be LUTRAM/BRAM; the input word is registered alongside the read (stage 1). Then NT
// registered compares per element and a registered popcount tree of the compare bits (log2 NT
// levels, codesign_adder_tree.v), + ACTVAL into the output register. Why a popcount and not
// FINN's binary search: it is exact for thresholds in any order, reads all NT thresholds of a
// channel in one ROM word (the existing layout) and keeps II = 1 with one compare level; the
// binary search needs sorted thresholds and one ROM read per stage. Every stage moves only on
// adv (output empty or taken), which is the whole backpressure story: a deeper pipeline only
// adds valid bits.
//
// Latency: an input word accepted at cycle t is in the output register at t + 4 + clog2(NT)
// (clog2(1) = 0); one word per cycle when not stalled.
module codesign_thresholding #(
    parameter integer C = 4,
    parameter integer PE = 1,
    parameter integer NT = 1,
    parameter integer IBITS = 8,
    parameter integer OBITS = 4,
    parameter integer TW = 9,        // signed compare width (holds inputs and thresholds)
    parameter integer I_SIGNED = 0,
    parameter integer I_BIPOLAR = 0,
    parameter integer ACTVAL = 0,
    parameter integer CF = C / PE,
    parameter integer TAW = (CF > 1) ? $clog2(CF) : 1
) (
    input  wire                  ap_clk,
    input  wire                  ap_rst_n,
    input  wire [PE*IBITS-1:0]   in0_V_TDATA,
    input  wire                  in0_V_TVALID,
    output wire                  in0_V_TREADY,
    output reg  [PE*OBITS-1:0]   out_V_TDATA,
    output reg                   out_V_TVALID,
    input  wire                  out_V_TREADY,
    output wire [TAW-1:0]        tmem_addr,
    output wire                  tmem_en,
    input  wire [PE*NT*TW-1:0]   tmem_q
);
    localparam integer VW = (OBITS > 16) ? OBITS + 1 : 17;
    wire adv = !out_V_TVALID || out_V_TREADY;
    wire fire = adv && in0_V_TVALID;
    assign in0_V_TREADY = adv;

    reg [TAW-1:0] cf;
    assign tmem_addr = cf;
    assign tmem_en = adv;

    reg v1;
    reg [PE*IBITS-1:0] x1;
    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            cf <= 0;
            v1 <= 1'b0;
        end else if (adv) begin
            v1 <= fire;
            if (fire) cf <= (cf == CF - 1) ? {TAW{1'b0}} : cf + 1'b1;
        end
        if (adv) x1 <= in0_V_TDATA;
    end

    function automatic signed [TW-1:0] ext_i(input [IBITS-1:0] v);
        begin
            if (I_BIPOLAR != 0) ext_i = v[0] ? 1 : -1;
            else if (I_SIGNED != 0) ext_i = $signed(v);
            else ext_i = $signed({1'b0, v});
        end
    endfunction

    // stage 1 (x1, ROM q) -> stage 2 (x2, tq2) -> registered compares -> registered popcount tree -> + ACTVAL -> output
    localparam integer PL = (NT > 1) ? $clog2(NT) : 0;
    localparam integer CW = PL + 1;
    localparam integer AL = 2 + PL;     // stages after stage 1 before the output register
    wire [AL:0] vs;                     // valid per stage: vs[0] = stage 1
    assign vs[0] = v1;
    genvar s;
    generate
        for (s = 1; s <= AL; s = s + 1) begin : g_v
            reg rv;
            always @(posedge ap_clk) begin
                if (!ap_rst_n) rv <= 1'b0;
                else if (adv) rv <= vs[s-1];
            end
            assign vs[s] = rv;
        end
    endgenerate

    // stage 2: the input and the ROM word registered once more, so a block-RAM output drives
    // only flip-flops
    reg [PE*IBITS-1:0] x2;
    reg [PE*NT*TW-1:0] tq2;
    always @(posedge ap_clk) begin
        if (adv) begin
            x2 <= x1;
            tq2 <= tmem_q;
        end
    end

    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire signed [TW-1:0] xe = ext_i(x2[p*IBITS +: IBITS]);
            reg [NT-1:0] ge;
            integer i;
            always @(posedge ap_clk) begin
                if (adv)
                    for (i = 0; i < NT; i = i + 1)
                        ge[i] <= (xe >= $signed(tq2[(p*NT + i)*TW +: TW]));
            end
            wire [CW-1:0] cnt;
            codesign_adder_tree #(.N(NT), .IW(1), .OW(CW), .SIGNED(0)) u_pop (
                .clk(ap_clk), .en(adv), .in(ge), .out(cnt));
            wire signed [VW-1:0] value = ACTVAL + $signed({1'b0, cnt});
            always @(posedge ap_clk) begin
                if (adv && vs[AL]) out_V_TDATA[p*OBITS +: OBITS] <= value[OBITS-1:0];
            end
        end
    endgenerate

    always @(posedge ap_clk) begin
        if (!ap_rst_n) out_V_TVALID <= 1'b0;
        else if (adv) out_V_TVALID <= vs[AL];
    end
endmodule
