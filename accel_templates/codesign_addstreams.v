// Elementwise add of two streams (AddStreams, the residual join), PE elements per word.
//
// out[i] = a[i] + b[i], each input sign- or zero-extended (A_SIGNED / B_SIGNED) to OBITS, the
// output width the compiler computed from the exact input ranges (no overflow, no saturation:
// the sum of two integer codes is exact). A pair of words moves only when both inputs are valid
// and the output register is free or being emptied (adv): each input's TREADY waits for the
// other input's TVALID, so neither branch gets ahead by a word inside the join; the branches'
// FIFOs absorb the difference in their latencies.
//
// Latency: 1 cycle (a pair accepted at t is in the output register at t + 1); II = 1.
module codesign_addstreams #(
    parameter integer PE = 1,
    parameter integer ABITS = 4,
    parameter integer BBITS = 4,
    parameter integer OBITS = 5,
    parameter integer A_SIGNED = 0,
    parameter integer B_SIGNED = 0
) (
    input  wire                ap_clk,
    input  wire                ap_rst_n,
    input  wire [PE*ABITS-1:0] in0_V_TDATA,
    input  wire                in0_V_TVALID,
    output wire                in0_V_TREADY,
    input  wire [PE*BBITS-1:0] in1_V_TDATA,
    input  wire                in1_V_TVALID,
    output wire                in1_V_TREADY,
    output reg  [PE*OBITS-1:0] out_V_TDATA,
    output reg                 out_V_TVALID,
    input  wire                out_V_TREADY
);
    wire adv = !out_V_TVALID || out_V_TREADY;
    wire fire = adv && in0_V_TVALID && in1_V_TVALID;
    assign in0_V_TREADY = adv && in1_V_TVALID;
    assign in1_V_TREADY = adv && in0_V_TVALID;

    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            wire [ABITS-1:0] a = in0_V_TDATA[p*ABITS +: ABITS];
            wire [BBITS-1:0] b = in1_V_TDATA[p*BBITS +: BBITS];
            wire signed [OBITS:0] ae = (A_SIGNED != 0) ? $signed({{(OBITS + 1 - ABITS){a[ABITS-1]}}, a})
                                                       : $signed({{(OBITS + 1 - ABITS){1'b0}}, a});
            wire signed [OBITS:0] be = (B_SIGNED != 0) ? $signed({{(OBITS + 1 - BBITS){b[BBITS-1]}}, b})
                                                       : $signed({{(OBITS + 1 - BBITS){1'b0}}, b});
            wire signed [OBITS:0] s = ae + be;
            always @(posedge ap_clk) begin
                if (fire) out_V_TDATA[p*OBITS +: OBITS] <= s[OBITS-1:0];
            end
        end
    endgenerate

    always @(posedge ap_clk) begin
        if (!ap_rst_n) out_V_TVALID <= 1'b0;
        else if (adv) out_V_TVALID <= fire;
    end
endmodule
