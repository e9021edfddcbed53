// Channel-wise multi-threshold (standalone Thresholding op), PE channels per word.
//
// out = ACTVAL + #{i : x >= T[c, i]} per element, truncated to OBITS. Thresholds for channel
// fold cf come from the per-PE ROMs outside the module (tmem_*), read synchronously so the
// ROM can be LUTRAM/BRAM; the input word is registered alongside the read (stage 1) and the
// comparison feeds the output register. Both stages move only on adv (output empty or taken),
// which is the whole backpressure story.
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

    genvar p;
    generate
        for (p = 0; p < PE; p = p + 1) begin : g_pe
            reg signed [VW-1:0] value;
            reg signed [TW-1:0] xe;
            integer i;
            always @* begin
                xe = ext_i(x1[p*IBITS +: IBITS]);
                value = ACTVAL;
                for (i = 0; i < NT; i = i + 1)
                    if (xe >= $signed(tmem_q[(p*NT + i)*TW +: TW])) value = value + 1;
            end
            always @(posedge ap_clk) begin
                if (adv && v1) out_V_TDATA[p*OBITS +: OBITS] <= value[OBITS-1:0];
            end
        end
    endgenerate

    always @(posedge ap_clk) begin
        if (!ap_rst_n) out_V_TVALID <= 1'b0;
        else if (adv) out_V_TVALID <= v1;
    end
endmodule
